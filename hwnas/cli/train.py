"""`hwnas train runs/NAME`: train a search's derived network from scratch, report accuracy and device latency."""

from __future__ import annotations

from numbers import Real
from pathlib import Path

import typer

from hwnas.cli.common import JsonFlag, console, handles_errors, print_json, progress_bar
from hwnas.units import check_range


def register(app: typer.Typer) -> None:
    app.command("train")(train)


@handles_errors
def train(
    run: Path = typer.Argument(..., help="Run directory written by `hwnas search`.", file_okay=False),
    epochs: int = typer.Option(None, "--epochs", "-e", help="Training epochs (default: the run's train.epochs)."),
    lr: float = typer.Option(None, "--lr", help="SGD learning rate (default: the run's train.lr)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Images per step (default: the run's "
                                   "train.batch_size)."),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Measure the network's latency on the "
                                 "run's device."),
    as_json: bool = JsonFlag,
) -> None:
    """Train RUN's derived architecture from scratch; write trained.pt and train.json."""
    if epochs is not None:
        check_range(epochs, "--epochs", 0)
    if lr is not None:
        check_range(lr, "--lr", 0, kind=Real)
    if batch_size is not None:
        check_range(batch_size, "--batch-size", 1)
    from hwnas.retrain import train_run

    with progress_bar(quiet=as_json) as progress:
        task = progress.add_task("training", total=None)

        def on_step(epoch: int, step: int, steps: int) -> None:
            progress.update(task, total=steps, completed=step + 1, description=f"epoch {epoch + 1}")

        def on_epoch(record) -> None:
            if not as_json:
                console.print(f"epoch {record.epoch + 1}: loss {record.loss:.3f} train acc {record.train_acc:.3f} "
                              f"[{record.seconds:.0f} s]")

        report = train_run(run, epochs=epochs, lr=lr, batch_size=batch_size, measure=measure, on_step=on_step,
                           on_epoch=on_epoch)
    if as_json:
        print_json(report)
        return
    measured = report.get("measured_ms")
    latency = f"measured {measured:.4g} ms" if measured is not None else "latency not measured"
    console.print(f"test accuracy {report['test_acc']:.4f}; {latency} on {report['device']} (predicted "
                  f"{report['predicted_ms']:.4g} ms, budget {report['budget_ms']:.4g} ms); wrote "
                  f"{report['trained']} and {Path(run) / 'train.json'}")
