"""The `hwnas` command. Each command group is one module with a `register(app)` function, joined here.

Command modules import the library inside their functions, so `hwnas --help` and `--version` start fast.
"""

from __future__ import annotations

import importlib

import typer

from hwnas import __version__

app = typer.Typer(name="hwnas", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Hardware-aware neural architecture search: measure blocks on a device, search under a "
                       "latency budget, export the result.")

COMMAND_MODULES = ("devices", "profile", "lut", "search", "train", "export", "diff")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"hwnas {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """hwnas: profile, search, export."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"hwnas.cli.{_name}").register(app)


def main() -> None:
    app()
