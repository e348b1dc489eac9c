"""Which table serves a device: the one owner of that decision. Every command that predicts or measures against a
LUT opens it here, so a table measured on another device or setup is refused the same way everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hwnas.device import Device
from hwnas.errors import HwnasError
from hwnas.lut.model import LatencyModel
from hwnas.lut.table import LatencyTable, default_lut_path

SETUP_FIELDS = ("runtime", "precision", "batch", "threads")  # what devices.yaml fixes and a fingerprint records


def device_lut_path(device: Device, lut: str | Path | None = None, lut_dir: str | Path | None = None) -> Path:
    """`lut` when given, else the device's table in `lut_dir` (default: DEFAULT_LUT_DIR)."""
    if lut is not None:
        return Path(lut)
    return default_lut_path(device.name) if lut_dir is None else default_lut_path(device.name, lut_dir)


def setup_mismatch(table: LatencyTable, device: Device) -> str | None:
    """Why `table` does not describe `device` (its name or a setting devices.yaml fixes), or None when it does."""
    measured_on = table.meta.get("device")
    fingerprint: dict[str, Any] = table.meta.get("fingerprint") or {}
    if measured_on != device.name:
        return f"it was measured on device '{measured_on}', not '{device.name}'"
    for key in SETUP_FIELDS:
        if key in fingerprint and str(fingerprint[key]) != str(getattr(device, key)):
            return (f"it was measured with {key} {fingerprint[key]!r}, while devices.yaml sets {key} "
                    f"{getattr(device, key)!r} for '{device.name}'")
    return None


def open_device_table(device: Device, lut: str | Path | None = None, lut_dir: str | Path | None = None,
                      force: bool = False) -> LatencyTable:
    """The table that serves `device`; another device's or setup's table is one line unless `force`."""
    path = device_lut_path(device, lut, lut_dir)
    table = LatencyTable.load(path)
    mismatch = setup_mismatch(table, device)
    if mismatch and not force:
        raise HwnasError(f"{path} does not serve device '{device.name}': {mismatch}; profile it with `hwnas profile "
                         f"--device {device.name}`, pass its own table with --lut, or --force to use this one")
    return table


def open_device_model(device: Device, lut: str | Path | None = None, lut_dir: str | Path | None = None,
                      space: str | None = None, force: bool = False) -> LatencyModel:
    """The latency model of `device`, calibrated with the fits made on `space` (none when space is None)."""
    return LatencyModel(open_device_table(device, lut, lut_dir, force), force=force, space=space)
