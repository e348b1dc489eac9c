"""Every package and module of hwnas imports on its own, first, in an interpreter holding no hwnas module: no
circular imports hide behind the order in which the rest of the suite happens to import them.

One fresh interpreter (no hwnas module loaded) imports the third-party dependencies once, then forks a child per
hwnas module; each child imports that one module with no hwnas module in `sys.modules`. That is what a fresh
`python -c "import hwnas.X"` per module proves, at a fraction of its cost (torch alone takes seconds to import).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Import names of the optional runtimes (pyproject's extras): a module that needs one that is not installed skips,
# and only when its import error names that runtime.
OPTIONAL_RUNTIMES = ("tensorrt", "cuda", "triton", "coremltools", "ai_edge_litert", "litert_torch", "onnxslim",
                     "onnxscript")

# Third-party modules the parent interpreter imports before forking (never a hwnas module: the children check).
PRELOAD = ("torch", "numpy", "onnx", "onnxruntime", "typer", "rich", "pandas", "yaml", "scipy", "matplotlib",
           "sklearn", "PIL")

CHILD = r"""
import importlib, importlib.util, io, json, os, re, sys, traceback

modules, preload, optional = json.loads(sys.argv[1])


def import_alone(name):
    loaded = sorted(m for m in sys.modules if m == "hwnas" or m.startswith("hwnas."))
    if loaded:
        return {"ok": False, "error": f"hwnas modules loaded before the import: {loaded}"}
    if name.endswith(".__main__"):  # importing a __main__ runs the program: ask it for its help
        sys.argv = [name, "--help"]
        sys.stdout = io.StringIO()
    try:
        importlib.import_module(name)
    except SystemExit as done:
        if name.endswith(".__main__") and done.code in (0, None):
            return {"ok": True}
        return {"ok": False, "error": f"SystemExit({done.code!r})"}
    except BaseException as error:
        missing = getattr(error, "name", None) or ""
        runtime = next((r for r in optional if isinstance(error, ImportError)
                        and importlib.util.find_spec(r) is None
                        and (missing.split(".")[0] == r or re.search(rf"\b{r}\b", str(error)))), None)
        return {"ok": False, "runtime": runtime, "error": traceback.format_exc()}
    return {"ok": True}


results = {}
for name in preload:
    try:
        importlib.import_module(name)
    except Exception:
        pass
for name in modules:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        out = json.dumps(import_alone(name)).encode()
        with os.fdopen(write, "wb") as pipe:
            pipe.write(out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    results[name] = json.loads(data) if data else {"ok": False, "error": f"child died (status {status})"}
print(json.dumps(results))
"""


def package_modules() -> list[str]:
    """hwnas and every package and module under it: pkgutil.walk_packages over each package pyproject.toml
    declares (some live in their own top-level folder, mapped into `hwnas`, out of reach of a walk of hwnas's path)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = set()
    for package in declared:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, f"{package} is not an installed package"
        found.add(package)
        found.update(info.name for info in pkgutil.walk_packages(spec.submodule_search_locations, package + "."))
    return sorted(found)


MODULES = package_modules()


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """{module: result} of importing each module alone (run from an empty folder, so the installed package is
    imported, not whatever the working directory holds)."""
    if not hasattr(os, "fork"):
        pytest.skip("the import check forks a child per module: os.fork is missing here")
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps([MODULES, PRELOAD, OPTIONAL_RUNTIMES])],
                          cwd=tmp_path_factory.mktemp("imports"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_walk_finds_every_part():
    """The walk reaches each part of the system, the mapped folders included (an empty walk would pass below)."""
    for name in ("hwnas", "hwnas.cli", "hwnas.kernels.dispatch", "hwnas.lut.table", "hwnas.profilers.base",
                 "hwnas.strategies.base", "hwnas.export.onnx", "hwnas.cells.genotype"):
        assert name in MODULES, name


@pytest.mark.parametrize("module", MODULES)
def test_imports_alone(module, imported):
    result = imported[module]
    if not result["ok"] and result.get("runtime"):
        pytest.skip(f"{module} needs {result['runtime']}, which is not installed")
    assert result["ok"], f"`import {module}` alone failed:\n{result['error']}"
