"""`hwnas devices`: the device registry and whether each device's runtime is usable from here."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from hwnas.cli.common import DevicesFile, JsonFlag, console, handles_errors, print_json
from hwnas.errors import HwnasError

NOT_USABLE = "not usable"  # the table's word for a local runtime that cannot measure; the reason follows it


def register(app: typer.Typer) -> None:
    app.command("devices")(devices)


@handles_errors
def devices(devices_file: Path = DevicesFile, check: bool = typer.Option(
        False, "--check", help="Also say whether each local runtime can measure here (imports each runtime)."),
        as_json: bool = JsonFlag) -> None:
    """List the devices hwnas knows (shipped devices.yaml plus --devices FILE)."""
    from hwnas.device import load_devices

    registry = load_devices(None)
    if devices_file is not None:
        registry.update(load_devices(devices_file))
    status = {name: _status(device) if check else "" for name, device in registry.items()}
    if as_json:
        print_json([{**device.__dict__, **({"status": status[name]} if check else {})}
                    for name, device in registry.items()])
        return
    table = Table("device", "runtime", "precision", "threads", "transport")
    for column in table.columns:
        column.no_wrap = True
    table.add_column("here" if check else "description", overflow="fold")
    for name, device in registry.items():
        cells = [name, device.runtime, device.precision, str(device.threads or "all"), device.transport,
                 _short(status[name]) if check else device.description]
        table.add_row(*(escape(cell) for cell in cells))
    console.print(table)
    for name, reason in status.items():  # full-width lines: an install hint is not folded into a narrow column
        if _short(reason) == NOT_USABLE:
            console.print(f"{name} cannot measure here: {reason}", markup=False, highlight=False)  # '[x]' is text


def _short(status: str) -> str:
    """The table's word for a status: the reasons a runtime cannot measure are printed below the table."""
    if status in ("", "ready"):
        return status
    return "remote" if status.startswith("remote") else NOT_USABLE


def _status(device) -> str:
    from hwnas.profilers import profiler_class

    if not device.is_local:
        return "remote: not checked from here"
    try:
        return profiler_class(device.runtime).unavailable_reason() or "ready"
    except HwnasError as error:
        return str(error)
