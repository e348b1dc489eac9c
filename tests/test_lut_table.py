"""LUT files: schema round trip, append-as-you-go, partial lines, fingerprints, missing keys."""

import json

import pytest

from hwnas.blocks import BlockSpec, Op
from hwnas.errors import HwnasError, MissingLatencyError
from hwnas.lut import COLUMNS, UNIT, LatencyModel, LatencyTable
from hwnas.lut.calibrate import fit_calibration
from hwnas.lut.validate import accuracy_metrics
from hwnas.profilers.base import Timing

FINGERPRINT = {"cpu": "test-cpu", "runtime": "onnxruntime", "runtime_version": "1", "threads": 1,
               "precision": "fp32", "batch": 1}


def _meta(fingerprint_id="abc123", batch=1):
    return {"device": "cpu", "fingerprint": {**FINGERPRINT, "batch": batch}, "fingerprint_id": fingerprint_id}


def _spec(channels=16):
    return BlockSpec(Op.parse("ir_k3_e6"), channels, channels, 8, 8)


def test_rows_round_trip_with_unit_and_provenance(tmp_path):
    path = tmp_path / "t.csv"
    table = LatencyTable.open(path, _meta())
    table.append(_spec(), Timing.from_samples([1.0, 2.0, 3.0]))
    again = LatencyTable.load(path)
    assert list(again.frame.columns) == COLUMNS
    assert again.meta["unit"] == UNIT == "milliseconds per image"
    row = again.frame.iloc[0]
    assert BlockSpec.from_row(row.to_dict()) == _spec()
    assert row["p50_ms"] == 2.0 and row["fingerprint"] == "abc123" and row["runtime"] == "onnxruntime"
    assert again.latency(_spec().key) == 2.0


def test_batch_measurements_are_stored_per_image(tmp_path):
    table = LatencyTable.open(tmp_path / "t.csv", _meta(batch=4))
    table.append(_spec(), Timing.from_samples([8.0, 8.0, 8.0]))
    assert LatencyTable.load(tmp_path / "t.csv").latency(_spec().key) == 2.0


def test_a_row_cut_short_by_a_kill_is_dropped_and_the_file_repaired_on_append(tmp_path):
    path = tmp_path / "t.csv"
    table = LatencyTable.open(path, _meta())
    table.append(_spec(16), Timing.from_samples([1.0, 1.0, 1.0]))
    table.append(_spec(24), Timing.from_samples([2.0, 2.0, 2.0]))
    text = path.read_text()
    path.write_text(text[: len(text) - 25])  # the last row loses its tail, as if killed mid-write
    assert LatencyTable.load(path).keys == {_spec(16).key}
    resumed = LatencyTable.open(path, _meta())
    resumed.append(_spec(24), Timing.from_samples([2.0, 2.0, 2.0]))
    assert LatencyTable.load(path).keys == {_spec(16).key, _spec(24).key}


def test_another_setups_table_is_refused_unless_forced(tmp_path):
    path = tmp_path / "t.csv"
    LatencyTable.open(path, _meta("aaa")).append(_spec(), Timing.from_samples([1.0, 1.0]))
    with pytest.raises(HwnasError, match="different setup.*--force"):
        LatencyTable.open(path, _meta("bbb"))
    forced = LatencyTable.open(path, {**_meta("bbb"), "fingerprint": {**FINGERPRINT, "runtime_version": "2"}},
                               force=True)
    forced.append(_spec(24), Timing.from_samples([1.0, 1.0]))
    mixed = LatencyTable.load(path)
    rows = mixed.frame.set_index("key")
    assert rows.loc[_spec(24).key, "fingerprint"] == "bbb" and str(rows.loc[_spec(24).key, "runtime_version"]) == "2"
    assert rows.loc[_spec().key, "fingerprint"] == "aaa" and mixed.meta["fingerprint_id"] == "aaa"
    with pytest.raises(HwnasError, match="another setup"):
        mixed.latencies([_spec().key, _spec(24).key])
    assert len(mixed.latencies([_spec().key, _spec(24).key], force=True)) == 2


def test_missing_keys_are_listed(tmp_path):
    table = LatencyTable.open(tmp_path / "t.csv", _meta())
    table.append(_spec(16), Timing.from_samples([1.0, 1.0]))
    with pytest.raises(MissingLatencyError, match=r"1 block\(s\) not measured: ir_k3_e6_nre:s1:24x8x8>24") as error:
        table.latencies([_spec(16).key, _spec(24).key])
    assert error.value.missing == [_spec(24).key]


def test_missing_table_and_meta_are_clear(tmp_path):
    with pytest.raises(HwnasError, match="no latency table here"):
        LatencyTable.load(tmp_path / "none.csv")
    (tmp_path / "lone.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(HwnasError, match="meta.json beside it"):
        LatencyTable.load(tmp_path / "lone.csv")


def test_calibration_fit_recovers_a_known_line():
    fit = fit_calibration([1.0, 2.0, 4.0, 8.0], [2.5, 4.5, 8.5, 16.5], ["a", "b", "c", "d"])
    assert fit.scale == pytest.approx(2.0) and fit.offset_ms == pytest.approx(0.5)
    assert fit.fit_mape_pct == pytest.approx(0.0, abs=1e-9)
    assert fit.apply(3.0) == pytest.approx(6.5)


def test_accuracy_metrics_on_hand_computed_values():
    metrics = accuracy_metrics(predicted=[1.1, 1.8, 3.0, 4.2], measured=[1.0, 2.0, 3.0, 4.0])
    assert metrics["mape_pct"] == pytest.approx(100 * (0.1 + 0.1 + 0.0 + 0.05) / 4)
    assert metrics["within_10pct"] == 1.0
    assert metrics["max_error_pct"] == pytest.approx(10.0)
    assert metrics["kendall_tau"] == pytest.approx(1.0)


def test_calibration_is_stored_per_space_and_resolution(tmp_path):
    table = LatencyTable.open(tmp_path / "t.csv", _meta())
    table.update_meta(lambda meta: meta.update(calibration={"fbnet@64": {"scale": 2.0, "offset_ms": 1.0}}))
    model = LatencyModel(LatencyTable.load(tmp_path / "t.csv"), space="fbnet")
    assert model.calibration_for(64).apply(1.0) == 3.0
    assert model.calibration_for(224).apply(1.0) == 1.0
    assert LatencyModel(LatencyTable.load(tmp_path / "t.csv"), space="proxyless").calibration_for(64).apply(1.0) == 1
    assert json.loads((tmp_path / "t.meta.json").read_text())["calibration"]["fbnet@64"]["scale"] == 2.0


def test_calibration_of_similar_networks_is_the_median_ratio():
    """Sums within 2x of each other cannot separate offset from scale: the fit is a ratio, robust to one outlier."""
    fit = fit_calibration([4.0, 5.0, 6.0, 7.0], [4.4, 5.5, 6.6, 11.0], ["a", "b", "c", "d"])
    assert fit.scale == pytest.approx(1.1) and fit.offset_ms == 0.0


def test_a_table_just_measured_reads_as_its_file_does(tmp_path):
    path = tmp_path / "t.csv"
    table = LatencyTable.open(path, _meta())
    table.append(_spec(), Timing.from_samples([0.123456789, 0.123456789, 0.123456789]))
    again = LatencyTable.load(path)
    assert table.latency(_spec().key) == again.latency(_spec().key) == 0.123457
    assert table.frame["p50_ms"].tolist() == again.frame["p50_ms"].tolist()
