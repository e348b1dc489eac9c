"""`hwnas devices`: the device registry and whether each device's runtime is usable from here."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from hwnas.cli.common import DevicesFile, JsonFlag, console, handles_errors, print_json
from hwnas.errors import HwnasError


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
                 status[name] if check else device.description]
        table.add_row(*(escape(cell) for cell in cells))  # '[tensorrt]' in an install hint is text, not markup
    console.print(table)


def _status(device) -> str:
    from hwnas.profilers import profiler_class

    if not device.is_local:
        return "remote: not checked from here"
    try:
        return profiler_class(device.runtime).unavailable_reason() or "ready"
    except HwnasError as error:
        return str(error)
