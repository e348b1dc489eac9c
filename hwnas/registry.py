"""Registries name their entries by import path ("package.module:attribute"), resolved on first use, so listing
what exists (`--help`, error messages) never imports a runtime, a converter or torch."""

from __future__ import annotations

import importlib
from typing import Any


def resolve(path: str) -> Any:
    """The object at "module:attribute", or the module itself for a path without ':'."""
    module, _, attribute = path.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded
