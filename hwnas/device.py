"""Target devices: which runtime measures, at which precision and thread count, and how the target is reached.

Loaded from YAML (`devices.yaml` shipped with hwnas, or the user's `--devices FILE`) with every field checked,
so a wrong key or value is one line naming the file, the device and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError
from hwnas.files import read_yaml
from hwnas.units import MAX_BATCH, MAX_THREADS, shown

RUNTIMES = ("onnxruntime", "tensorrt", "tflite", "coreml", "torch")
PRECISIONS = ("fp32", "fp16", "int8")
_TRANSPORT_RE = re.compile(r"^(local|agent://local|ssh://([\w.-]+@)?[\w.-]+(:\d+)?|adb://[\w.:-]*)$")
BUILTIN_DEVICES = Path(__file__).with_name("devices.yaml")


@dataclass(frozen=True)
class Device:
    """One measurement target."""

    name: str
    runtime: str  # which profiler measures: one of RUNTIMES
    precision: str = "fp32"  # fp32 | fp16 | int8
    threads: int = 1  # CPU threads for the runtime; 0 = all cores
    batch: int = 1  # images per inference; the LUT stores milliseconds per image
    transport: str = "local"  # local | ssh://[user@]host[:port] | adb://[serial]
    python: str = "python3"  # interpreter on the target that runs the agent (ssh transport)
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # runtime-specific settings, checked by the profiler

    @property
    def is_local(self) -> bool:
        return self.transport == "local"

    @property
    def transport_scheme(self) -> str:
        return self.transport.split("://", 1)[0]

    @property
    def transport_target(self) -> str:
        return self.transport.split("://", 1)[1] if "://" in self.transport else ""


_FIELD_TYPES: dict[str, type] = {"runtime": str, "precision": str, "threads": int, "batch": int, "transport": str,
                                  "python": str, "description": str, "options": dict}
assert set(_FIELD_TYPES) == {f.name for f in fields(Device)} - {"name"}


def _check_device(source: str, name: str, entry: Any) -> Device:
    where = f"{source}: device '{name}'"
    if not name or not name.isprintable():
        raise ConfigError(f"{source}: device name {shown(name)} must be non-empty, on one line")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(_FIELD_TYPES), key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown key {shown(unknown[0])} (allowed: {', '.join(_FIELD_TYPES)})")
    if "runtime" not in entry:
        raise ConfigError(f"{where}: missing key 'runtime' (one of {', '.join(RUNTIMES)})")
    values = dict(entry)
    for key, value in values.items():
        expected = _FIELD_TYPES[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: key '{key}' must be {expected.__name__}, got {shown(value)}")
    if values["runtime"] not in RUNTIMES:
        raise ConfigError(f"{where}: key 'runtime' is {shown(values['runtime'])}, expected one of "
                          f"{', '.join(RUNTIMES)}")
    if values.get("precision", "fp32") not in PRECISIONS:
        raise ConfigError(f"{where}: key 'precision' is {shown(values['precision'])}, expected one of "
                          f"{', '.join(PRECISIONS)}")
    for key, low, high, note in (("threads", 0, MAX_THREADS, " (0 = all cores)"), ("batch", 1, MAX_BATCH, "")):
        if not low <= values.get(key, low) <= high:
            raise ConfigError(f"{where}: '{key}' must be >= {low} and <= {high}{note}, got {shown(values[key])}")
    if not _TRANSPORT_RE.match(values.get("transport", "local")):
        raise ConfigError(f"{where}: key 'transport' is {shown(values['transport'])}, expected local, "
                          "ssh://[user@]host[:port] or adb://[serial]")
    device = Device(name=name, **values)
    from hwnas.profilers.options import check_options  # here, not at the top: it imports this module
    from hwnas.profilers.transports import check_transport

    check_transport(device.transport, f"{where}: ")
    try:
        check_options(device)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return device


def load_devices(path: str | Path | None = None) -> dict[str, Device]:
    """All devices of a YAML file (the shipped registry when `path` is None)."""
    source = Path(path) if path is not None else BUILTIN_DEVICES
    data = read_yaml(source, "devices file")
    if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
        raise ConfigError(f"{source}: expected a top-level 'devices:' mapping of device name -> settings")
    extra = sorted(set(data) - {"devices"}, key=str)
    if extra:
        raise ConfigError(f"{source}: unknown top-level key {shown(extra[0])} (only 'devices' is allowed)")
    return {str(name): _check_device(str(source), str(name), entry) for name, entry in data["devices"].items()}


def get_device(name: str, path: str | Path | None = None) -> Device:
    """One device by name; a user file given with --devices adds to (and overrides) the shipped ones."""
    devices = load_devices(None)
    if path is not None:
        devices.update(load_devices(path))
    if name not in devices:
        where = (f"{path} or the shipped devices.yaml" if path
                 else "the shipped devices.yaml (add yours with --devices FILE)")
        raise ConfigError(f"unknown device '{name}': not in {where}; known: {', '.join(devices)}")
    return devices[name]
