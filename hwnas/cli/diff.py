"""`hwnas diff ARCH_A ARCH_B`: D-DARTS' architecture distance between two cell networks (thesis Eqs. 4.6-4.8)."""

from __future__ import annotations

from pathlib import Path

import typer

from hwnas.cli.common import JsonFlag, console, handles_errors, print_json


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)


def load_cell_arch(text: str):
    """A cell architecture from a `cells:...` string, an arch.json, or a run folder holding one."""
    from hwnas.cells import CellArch
    from hwnas.errors import HwnasError

    if text.startswith("cells:"):
        return CellArch.parse(text)
    path = Path(text)
    if path.is_dir():
        path = path / "arch.json"
        if not path.exists():
            raise HwnasError(f"{text}: no arch.json in this folder (is it a run directory?)")
    if path.suffix == ".json":
        if not path.exists():
            raise HwnasError(f"{path}: no such file")
        return CellArch.load(path)
    raise HwnasError(f"'{text[:60]}': hwnas diff compares cell architectures (a cells:... string, an arch.json "
                     "or a run folder of a cell search)")


@handles_errors
def diff(arch_a: str = typer.Argument(..., help="Cell architecture: cells:... string, arch.json or run folder."),
         arch_b: str = typer.Argument(..., help="The architecture to compare it with."),
         as_json: bool = JsonFlag) -> None:
    """Distance M between two cell architectures: Hamming per edge, Hausdorff per cell, mean over cells."""
    from hwnas.cells.distance import diff_report

    report = diff_report(load_cell_arch(arch_a), load_cell_arch(arch_b))
    if as_json:
        print_json(report)
        return
    console.print(f"M(A, B) = {report['distance']:.4f}  (0: same cells; thesis Eq. 4.8)")
    for name, value in report["cells"].items():
        console.print(f"  {name}: M_H = {value:.4f}")
    for row in report["differences"]:
        console.print(f"  {row['cell']} node {row['node']}: {' '.join(row['a'])}  ->  {' '.join(row['b'])}",
                      highlight=False, soft_wrap=True)
