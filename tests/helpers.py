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
