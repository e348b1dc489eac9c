"""What converters and runtimes print during an export (warnings, logging, progress bars, C++ logs written straight
to file descriptors 1 and 2), kept off the terminal so hwnas's own lines stand alone; `hwnas export --verbose`
shows it."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO


@dataclass
class ThirdPartyOutput:
    """`terminal` is where stderr went before the capture (for the caller's own lines meanwhile); `text` is what
    was captured, set when the capture ends."""

    terminal: TextIO
    text: str = ""


@contextlib.contextmanager
def captured_third_party_output() -> Iterator[ThirdPartyOutput]:
    """Send everything printed in the block, by Python code or native code, to a temporary file instead."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    own_terminal = _writes_to_fd(sys.stderr, 2)
    output = ThirdPartyOutput(os.fdopen(os.dup(saved[2]), "w") if own_terminal else sys.stderr)
    python = io.StringIO()  # never closed: a logging handler created in the block may still write to it later
    with tempfile.TemporaryFile() as native:
        try:
            for fd in (1, 2):
                os.dup2(native.fileno(), fd)
            with contextlib.redirect_stdout(python), contextlib.redirect_stderr(python), warnings.catch_warnings():
                yield output
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            if own_terminal:
                output.terminal.close()
            native.seek(0)
            output.text = native.read().decode(errors="replace") + python.getvalue()


def _writes_to_fd(stream: TextIO, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False
