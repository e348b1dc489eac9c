"""Files a user hands hwnas or hwnas writes: YAML read with one line for any fault, writes that replace a file whole
or not at all (temporary file, fsync, rename), and a lock file that lets one process at a time write a table. A
full disk or a kill leaves the previous file intact."""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from hwnas.errors import ConfigError, HwnasError


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces `path` only once it is complete and on disk."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as error:
        raise HwnasError(f"{path}: cannot write ({error.strerror or error}); the previous file is unchanged") from None
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path: str | Path, content: str | bytes) -> None:
    """Replace `path` by `content` whole (text is written as UTF-8)."""
    with atomic_writer(path) as handle:
        handle.write(content.encode() if isinstance(content, str) else content)


def _sync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename itself is still atomic
    finally:
        os.close(descriptor)


_HELD: dict[Path, list] = {}  # lock path -> [open handle, depth]: a process may take its own lock again


@contextmanager
def exclusive(path: str | Path, what: str, hint: str) -> Iterator[None]:
    """Hold `path`.lock for the block, or refuse at once with one line when another process holds it: `what` names
    the thing being written and `hint` what the user can do. Re-entrant within one process."""
    lock = Path(path).with_name(Path(path).name + ".lock").resolve()
    held = _HELD.get(lock)
    if held:
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    handle = lock.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise HwnasError(f"{what} is being written by {owner}; wait for it to finish, or {hint}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} ({_command()})")
    handle.flush()
    _HELD[lock] = [handle, 1]
    try:
        yield
    finally:
        del _HELD[lock]
        handle.close()  # closing releases the lock; the file stays (removing it would race a waiting process)


def _command() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join([name, *sys.argv[1:3]])



def read_yaml(path: str | Path, what: str) -> Any:
    """The YAML document in `path` (`what` names the kind of file in messages); any fault is one ConfigError line:
    missing, unreadable, not UTF-8, not YAML (with its line), nested too deep, a number too long to convert."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read this {what} as UTF-8 text ({error})") from None
    except (yaml.YAMLError, RecursionError) as error:  # RecursionError: nested thousands of levels deep
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        raise ConfigError(f"{path}:{line} is not valid YAML ({problem})") from None
    except ValueError as error:  # a number past Python's 4300-digit limit
        raise ConfigError(f"{path}: is not a usable {what} ({error})") from None
