"""Does a latency model transfer across spaces? Each space is calibrated as a user would (its own random networks;
an existing fit of that space and resolution is reused), then every published network and held-out random networks
of each space are measured end to end (the LUT's steady method) and predicted three ways: the plain sum of blocks,
the calibration of the network's own space (where it is a point of one), and the calibration of every other space
(what a calibration keyed by resolution alone used to do).

    python bench/cross_space.py --resolution 48 --samples 10
    python bench/cross_space.py --resolution 224 --samples 20 --out bench/results/cross_space_224.json  # issue 29
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from search_common import report

from hwnas.device import get_device
from hwnas.lut.calibrate import calibrate_device
from hwnas.lut.device_table import device_lut_path
from hwnas.lut.model import LatencyModel
from hwnas.lut.network_timing import measure_on_device
from hwnas.lut.steady import reference_spec
from hwnas.lut.table import LatencyTable
from hwnas.lut.validate import accuracy_metrics, sample_archs
from hwnas.spaces.catalog import SPACES
from hwnas.spaces.files import resolve_space
from hwnas.spaces.published import PUBLISHED, get_published, published_in_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", nargs="+", default=list(SPACES))
    parser.add_argument("--resolution", type=int, default=48)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10, help="held-out random networks per space")
    parser.add_argument("--calibration-networks", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lut", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/cross_space.json"))
    args = parser.parse_args()
    rows, summary, lut = measure(args.device, args.lut, args.spaces, args.resolution, args.classes, args.samples,
                                 args.calibration_networks)
    report(f"cross-space prediction error (%; measured with the steady method) at {args.resolution} px",
           ["network", "kind", "home", "measured_ms", "plain_err_pct", "own_err_pct", "foreign_min_err_pct",
            "foreign_max_err_pct", "reference_ratio"], rows, args.out,
           {"summary": summary, "resolution": args.resolution, "device": args.device}, lut=lut)
    for space_name in args.spaces:
        own, flat = summary[space_name]["own"], summary[space_name]["plain"]
        print(f"{space_name}: random held-out, own calibration MAPE {own['mape_pct']:.2f}% within ±10% "
              f"{100 * own['within_10pct']:.0f}% tau {own['kendall_tau']:.3f}; plain sum MAPE {flat['mape_pct']:.2f}%")
    for model, fit in summary["transfer"].items():
        spaces_out = ", ".join(f"{s} {m['mape_pct']:.1f}%" for s, m in fit["leave_one_space_out"].items())
        print(f"{model} fitted across spaces: held-out space MAPE {spaces_out}; published MAPE "
              f"{fit['published']['mape_pct']:.1f}%, within ±10% {100 * fit['published']['within_10pct']:.0f}%")
    user = summary["published"]["as_a_user_would"]
    print(f"published: home space's calibration (else the plain sum) within ±10% {100 * user['within_10pct']:.0f}%, "
          f"MAPE {user['mape_pct']:.2f}%, worst {user['max_error_pct']:.1f}%; plain sum within ±10% "
          f"{100 * summary['published']['plain_within_10pct']:.0f}%; worst error with another space's calibration "
          f"{summary['published']['foreign_worst_abs_err_pct']:.1f}%")


def measure(device_name: str, lut_path: Path | None, space_names: list[str], resolution: int, classes: int,
            samples: int, calibration_networks: int) -> tuple[list[dict], dict, Path]:
    """Calibrate each space as a user would (reusing a fit of its space and resolution), time the published and
    held-out random networks, and predict each of them every way; the rows, their summary and the LUT's path."""
    device = get_device(device_name)
    lut = device_lut_path(device, lut_path)
    spaces = {name: resolve_space(name, resolution, classes) for name in space_names}
    for space in spaces.values():
        if resolution not in LatencyModel(LatencyTable.load(lut), space=space.name).calibrations:
            calibrate_device(device, space, lut, calibration_networks)
    networks: list[tuple[str, str, str | None, object]] = []  # (name, kind, home space, arch)
    for name in PUBLISHED:
        arch = get_published(name, resolution, classes)
        home = next((s for s, space in spaces.items() if name in published_in_space(space)), None)
        networks.append((name, "published", home, arch))
    for space_name, space in spaces.items():
        calibrated_on = set(LatencyModel(LatencyTable.load(lut), space=space.name)
                            .calibration_for(resolution).archs)
        for name, arch in sample_archs(space, samples, seed=7, exclude=calibrated_on):
            networks.append((name, "random", space_name, arch))
    # each network is timed beside its space's reference block, the one the table's rows were timed beside (the
    # published networks beside their home space's, else the first space's): another reference's baseline is
    # unknown, and a weight-heavy one reads slow after a large network has flushed it from cache
    timings = []
    for space_name in [None, *spaces]:
        group = [(name, arch) for name, _, home, arch in networks if home == space_name]
        reference = reference_spec(spaces[space_name or space_names[0]].specs())
        timed = iter(measure_on_device(device, lut, group, reference=reference))
        timings.append({name: next(timed) for name, _ in group})
    by_name = {name: timing for group in timings for name, timing in group.items()}
    timings = [by_name[name] for name, _, _, _ in networks]
    table = LatencyTable.load(lut)
    models = {name: LatencyModel(table, space=space.name) for name, space in spaces.items()}
    plain = LatencyModel(table)
    rows = []
    for (name, kind, home, arch), timing in zip(networks, timings):
        measured = timing.median_ms
        row = {"network": name, "kind": kind, "home": home, "measured_ms": measured,
               "reference_ratio": timing.reference_ratio, "plain_err_pct": _err(plain.predict(arch), measured),
               **network_features(arch, plain)}
        if home:
            row["own_err_pct"] = _err(models[home].predict(arch), measured)
        foreign = [_err(model.predict(arch), measured) for space, model in models.items() if space != home]
        row.update(foreign_min_err_pct=min(foreign), foreign_max_err_pct=max(foreign))
        rows.append(row)
    summary = {}
    for space_name in spaces:
        mine = [(n, a, t) for (n, k, h, a), t in zip(networks, timings) if k == "random" and h == space_name]
        measured = [t.median_ms for _, _, t in mine]
        summary[space_name] = {
            "own": accuracy_metrics([models[space_name].predict(a) for _, a, _ in mine], measured),
            "plain": accuracy_metrics([plain.predict(a) for _, a, _ in mine], measured),
            "calibration": models[space_name].calibration_for(resolution).to_dict()}
    published = [r for r in rows if r["kind"] == "published"]
    summary["published"] = {
        "n": len(published),
        "plain_within_10pct": float(np.mean([abs(r["plain_err_pct"]) <= 10 for r in published])),
        "own_within_10pct": _share([r.get("own_err_pct") for r in published]),
        "foreign_worst_abs_err_pct": max(max(abs(r["foreign_min_err_pct"]), abs(r["foreign_max_err_pct"]))
                                         for r in published)}
    user = [r["own_err_pct"] if r["home"] else r["plain_err_pct"] for r in published]  # `lut predict NAME --space HOME`
    summary["published"]["as_a_user_would"] = accuracy_metrics(
        [r["measured_ms"] * (1 + e / 100) for r, e in zip(published, user)], [r["measured_ms"] for r in published])
    summary["transfer"] = transfer_fits(rows, spaces)
    return rows, summary, lut


def network_features(arch, plain: LatencyModel) -> dict[str, float]:
    """What a model fitted across spaces may use: the block sum, the block count, and the weights in MB (fp32)."""
    specs = arch.specs()
    weights = sum(p.numel() for spec in specs for p in spec.build().parameters())
    return {"block_sum_ms": plain.block_sum(arch), "blocks": len(specs), "weight_mb": 4 * weights / 1e6}


TRANSFER_MODELS = {"scale+offset": ("block_sum_ms",), "scale+offset+weights": ("block_sum_ms", "weight_mb"),
                   "scale+offset+blocks": ("block_sum_ms", "blocks")}


def transfer_fits(rows: list[dict], spaces) -> dict:
    """Each model fitted on the random networks of every space but one and scored on that one (does it transfer?),
    and fitted on all spaces' random networks and scored on the published networks."""
    randoms = [r for r in rows if r["kind"] == "random"]
    published = [r for r in rows if r["kind"] == "published"]
    out = {}
    for model, features in TRANSFER_MODELS.items():
        held_out = {}
        for space in spaces:
            coef = _fit([r for r in randoms if r["home"] != space], features)
            mine = [r for r in randoms if r["home"] == space]
            held_out[space] = accuracy_metrics(_predict(mine, features, coef), [r["measured_ms"] for r in mine])
        coef = _fit(randoms, features)
        out[model] = {"leave_one_space_out": held_out, "coefficients": [float(c) for c in coef],
                      "published": accuracy_metrics(_predict(published, features, coef),
                                                    [r["measured_ms"] for r in published])}
    return out


def _fit(rows: list[dict], features: tuple[str, ...]) -> np.ndarray:
    design = np.array([[r[f] for f in features] + [1.0] for r in rows])
    return np.linalg.lstsq(design, np.array([r["measured_ms"] for r in rows]), rcond=None)[0]


def _predict(rows: list[dict], features: tuple[str, ...], coef: np.ndarray) -> list[float]:
    return [float(np.dot([r[f] for f in features] + [1.0], coef)) for r in rows]


def _err(predicted: float, measured: float) -> float:
    return 100 * (predicted / measured - 1)


def _share(errors: list[float | None]) -> float | None:
    known = [abs(e) <= 10 for e in errors if e is not None]
    return float(np.mean(known)) if known else None


if __name__ == "__main__":
    main()
