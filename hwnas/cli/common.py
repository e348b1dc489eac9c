"""What every command shares: one-line errors, progress bars on stderr, JSON on stdout, common options."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hwnas.config import DEFAULT_LUT_DIR
from hwnas.errors import HwnasError

console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DevicesFile = typer.Option(None, "--devices", help="Your devices YAML (adds to / overrides the shipped devices.yaml).",
                           exists=False, dir_okay=False)
DeviceName = typer.Option("cpu", "--device", "-d", help="Device name from devices.yaml.")
LutPath = typer.Option(None, "--lut", help="LUT CSV path (default: LUT_DIR/DEVICE.csv).", dir_okay=False)
LutDir = typer.Option(DEFAULT_LUT_DIR, "--lut-dir", help="Folder of LUTs, one CSV per device.", file_okay=False)
JsonFlag = typer.Option(False, "--json", help="Print the result as JSON on stdout (for machines).")
SteadyWait = typer.Option(30.0, "--steady-wait", min=0.0,
                          help="Seconds to keep timing while too few calls ran with a reference block at its own speed "
                               "(a busy or throttled machine); then time anyway and warn (0: no waiting).")
ForceFlag = typer.Option(False, "--force", help="Mix rows measured on different setups (fingerprints).")


def fail(message: str) -> NoReturn:
    """Print one error line and exit 1."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def handles_errors(function: F) -> F:
    """Turn a user-facing HwnasError into one line and exit status 1 (never a traceback)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except HwnasError as error:
            fail(str(error))

    return wrapper  # type: ignore[return-value]


def warn_unsteady(name: str, ratio: float) -> None:
    """Say that a network was timed while the machine ran off its LUT speed (a noisy neighbour, throttling)."""
    console.print(f"[yellow]warning:[/yellow] {escape(name)} timed while a reference block ran {ratio:.2f}x its LUT "
                  "time (machine busy or throttled): compare with care, or re-profile", highlight=False)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@contextmanager
def progress_bar(quiet: bool = False) -> Iterator[Progress]:
    """A rich progress display on stderr (hidden with quiet, e.g. under --json)."""
    columns = (SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=quiet) as progress:
        yield progress


@contextmanager
def printing_to(stream) -> Iterator[None]:
    """hwnas's own lines (and progress bars) go to `stream` for the block, e.g. while others' output is captured."""
    console.file = stream
    try:
        yield
    finally:
        console.file = None


def lazy_task(progress: Progress, description: str, total: int | None = None) -> Callable[..., None]:
    """A callback that advances a progress task created on its first call (no empty bar before a failure)."""
    task_ids: list = []

    def advance(*_: Any) -> None:
        if not task_ids:
            task_ids.append(progress.add_task(description, total=total))
        progress.advance(task_ids[0])

    return advance


def resolve_lut(device: str, lut: Path | None, lut_dir: Path) -> Path:
    from hwnas.lut.table import default_lut_path

    return lut if lut is not None else default_lut_path(device, lut_dir)


def load_arch(text: str, resolution: int | None = None, classes: int | None = None):
    """An Arch from an architecture string, a published network's name, an arch.json, or a run folder."""
    from hwnas.arch import Arch

    path = Path(text)
    if re.match(r"^(\d+|cells):", text):
        arch = Arch.parse(text)
    elif path.is_dir():
        if not (path / "arch.json").exists():
            raise HwnasError(f"{path}: no arch.json in this folder (is it a run directory?)")
        arch = Arch.load(path / "arch.json")
    elif path.suffix == ".json":
        if not path.exists():
            raise HwnasError(f"{path}: no such file")
        arch = Arch.load(path)
    else:
        from hwnas.spaces.published import get_published

        arch = get_published(text)
    if resolution is not None:
        arch = arch.with_resolution(resolution)
    return arch.with_classes(classes) if classes is not None else arch


def arch_space(text: str) -> str | None:
    """The space a run folder's or arch.json's network was searched in (None for strings and published names)."""
    from hwnas.export.source import space_name

    if re.match(r"^(\d+|cells):", text):
        return None
    try:
        path = Path(text)
        file = path / "arch.json" if path.is_dir() else path
        if file.suffix != ".json" or not file.is_file():
            return None
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None  # load_arch has already said what is wrong with an unreadable file
    return space_name(data) if isinstance(data, dict) else None
