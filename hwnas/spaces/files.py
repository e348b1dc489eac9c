"""Search spaces from YAML files, so a user can search their own space as data (`--space my_space.yaml`):

    name: tiny
    stem: [cn_k3_s2_c16]
    stages:
      - {channels: 24, layers: 2, stride: 2, ops: [ir_k3_e3, ir_k5_e3, skip], first_ops: [ir_k3_e3, ir_k5_e3]}
    head: [cn_k1_c128]
    act: relu          # optional: classifier (fc), num_classes, resolution, description
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError
from hwnas.files import read_yaml
from hwnas.spaces.chain import Space, Stage

_SPACE_KEYS = {"name", "stem", "stages", "head", "classifier", "num_classes", "resolution", "act", "description"}
_STAGE_KEYS = {"channels", "layers", "stride", "ops", "first_ops", "min_layers", "act"}


def is_space_file(name: str) -> bool:
    return name.endswith((".yaml", ".yml"))


def _strings(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
        raise ConfigError(f"{where}: key '{key}' must be a non-empty list of block strings")
    return tuple(value)


def _stage(where: str, entry: Any) -> Stage:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(sorted(_STAGE_KEYS))}")
    unknown = sorted(set(entry) - _STAGE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(_STAGE_KEYS))})")
    for key in ("channels", "layers", "stride"):
        if not isinstance(entry.get(key), int) or entry[key] < 1:
            raise ConfigError(f"{where}: key '{key}' must be a positive integer, got {entry.get(key)!r}")
    min_layers = entry.get("min_layers")
    if min_layers is not None and (not isinstance(min_layers, int) or not 1 <= min_layers <= entry["layers"]):
        raise ConfigError(f"{where}: key 'min_layers' must be an integer in 1..layers, got {min_layers!r}")
    return Stage(entry["channels"], entry["layers"], entry["stride"], _strings(where, "ops", entry.get("ops")),
                 _strings(where, "first_ops", entry["first_ops"]) if "first_ops" in entry else None,
                 min_layers, entry.get("act"))


def load_space_file(path: str | Path) -> Space:
    """A chain `Space` from YAML, every key checked; its positions are built so bad block strings fail here."""
    path = Path(path)
    data = read_yaml(path, "space file")
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(sorted(_SPACE_KEYS))}")
    unknown = sorted(set(data) - _SPACE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(_SPACE_KEYS))})")
    if not isinstance(data.get("stages"), list) or not data["stages"]:
        raise ConfigError(f"{where}: key 'stages' must be a non-empty list of stages")
    options = {k: data[k] for k in ("classifier", "num_classes", "resolution", "act", "description") if k in data}
    space = Space(name=str(data.get("name", path.stem)), stem=_strings(where, "stem", data.get("stem")),
                  stages=tuple(_stage(f"{where}: stages[{i}]", s) for i, s in enumerate(data["stages"])),
                  head=_strings(where, "head", data.get("head")), **options)
    try:
        space.positions  # noqa: B018 - parse every block string now
        space.head_layers  # noqa: B018
    except Exception as error:  # a bad block string in stem/head raises BlockStringError (a HwnasError)
        raise ConfigError(f"{where}: {error}") from None
    return space


def resolve_space(name: str, resolution: int | None = None, num_classes: int | None = None) -> Any:
    """A space by catalog name (hwnas.spaces.catalog, then the cell spaces of hwnas.cells) or a space file
    (`*.yaml`), at the given resolution and class count."""
    from hwnas.cells import catalog as cells
    from hwnas.spaces.catalog import SPACES, get_space

    if is_space_file(name):
        space = load_space_file(name)
        if resolution is not None:
            space = space.with_resolution(resolution)
        return space.with_classes(num_classes) if num_classes is not None else space
    if name in SPACES:
        return get_space(name, resolution, num_classes)
    if name in cells.CELL_SPACES:
        return cells.get_cell_space(name, resolution, num_classes)
    known = sorted(SPACES) + sorted(cells.CELL_SPACES)
    raise ConfigError(f"unknown space '{name}' (known: {', '.join(known)}; or a space YAML file)")
