"""Helpers shared by the test modules."""
from __future__ import annotations

import subprocess
import sys


def run_cli(*args, timeout: int = 900, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m faceswap ARGS` as a user would; returns the finished process (output captured)."""
    return subprocess.run([sys.executable, "-m", "faceswap", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def start_cli(*args, **kwargs) -> subprocess.Popen:
    """Start `python -m faceswap ARGS` in the background (output discarded unless redirected)."""
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    kwargs.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen([sys.executable, "-m", "faceswap", *map(str, args)], **kwargs)


def invoke_cli(*args):
    """Run the `faceswap` command in this process (click's runner): for checks that stop before any long work,
    without a new interpreter's start-up. The result has exit_code, stdout and stderr."""
    from click.testing import CliRunner

    from faceswap.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def launch(workspace) -> tuple:
    """`faceswap ui` on a free local port, in a child process, once it answers: (process, page url with its token),
    for the tests and benchmarks that drive the page."""
    import os
    import socket
    import time
    import urllib.request

    from faceswap.ui import guard
    from faceswap.ui.app import TOKEN_ENV

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = guard.new_token()
    process = start_cli("ui", "--workspace", workspace, "--port", port, env={**os.environ, TOKEN_ENV: token})
    url = f"http://127.0.0.1:{port}/?token={token}"
    for _ in range(150):
        try:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/api/state",
                                                          headers={"X-Faceswap-Token": token}), timeout=1)
            return process, url
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"faceswap ui did not answer at {url}")
