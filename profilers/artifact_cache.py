"""Converted files for *timing*, cached by what a module computes, so a block is converted once per machine.

Conversion dominates TFLite profiling (seconds per block, against tens of milliseconds of timing), and the same
blocks recur: a rerun at the same resolution, and every TFLite device (this CPU, a Raspberry Pi over ssh, a phone
over adb) times the same .tflite files. The key is the module's traced forward code, its modules' hyperparameters
(repr), its parameter shapes and the input shape, plus the caller's facts (converter version, precision), never
the weight values: a cached file has the weights of its first conversion, which is right for latency and wrong
for anything else, so only the profilers' compile path uses this cache, never an exporter.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn


def structure_key(model: nn.Module, input_shape: tuple[int, ...], facts: dict[str, Any]) -> str | None:
    """A hash of what `model` computes at `input_shape`; None when its forward cannot be traced symbolically."""
    try:
        code = torch.fx.symbolic_trace(model).code
    except Exception:  # data-dependent control flow and the like: such modules are simply not cached
        return None
    shapes = [(name, list(tensor.shape), str(tensor.dtype)) for name, tensor in model.state_dict().items()]
    payload = {"code": code, "modules": repr(model), "shapes": shapes, "input": list(input_shape),
               "torch": torch.__version__, **facts}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def default_folder(kind: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hwnas" / kind


class ArtifactCache:
    """`KEY.SUFFIX` files with `KEY.json` facts beside them; writes go through a temporary name."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()

    def get(self, key: str, suffix: str) -> tuple[Path, dict[str, Any]] | None:
        path, facts = self.folder / f"{key}{suffix}", self.folder / f"{key}.json"
        if not (path.is_file() and facts.is_file()):
            return None
        try:
            return path, json.loads(facts.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, key: str, suffix: str, source: Path, facts: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{key}{suffix}"
        partial = self.folder / f"{key}{suffix}.{os.getpid()}.part"
        shutil.copyfile(source, partial)
        partial.replace(target)
        partial_facts = self.folder / f"{key}.json.{os.getpid()}.part"
        partial_facts.write_text(json.dumps(facts))
        partial_facts.replace(self.folder / f"{key}.json")
        return target
