class FaceswapError(Exception):
    """An error the user can act on: the CLI prints its message as one line and exits non-zero."""


class Interrupted(FaceswapError):
    """A run stopped by SIGINT or SIGTERM after saving its state: exit 130 or 143, never 0."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
