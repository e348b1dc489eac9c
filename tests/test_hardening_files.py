"""Files a user hands hwnas are untrusted: no code runs from a checkpoint or a CIFAR pickle, a table is never lost
to a second writer or a full disk, and a damaged table is refused with one line instead of wrong latencies."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hwnas.arch import Arch
from hwnas.blocks import BlockSpec, Op
from hwnas.cli import app
from hwnas.data import load_dataset
from hwnas.errors import ConfigError, HwnasError
from hwnas.files import write_atomically
from hwnas.lut import LatencyModel, LatencyTable
from hwnas.lut.table import table_lock
from hwnas.profilers.base import Timing
from hwnas.search.run_folder import RunDir
from tests.search_helpers import one_line_error

runner = CliRunner()
FINGERPRINT = {"cpu": "test-cpu", "runtime": "onnxruntime", "runtime_version": "1", "threads": 1,
               "precision": "fp32", "batch": 1}
META = {"device": "cpu", "fingerprint": FINGERPRINT, "fingerprint_id": "abc123"}


class _RunsCommand:
    """A pickle payload: unpickling it calls os.system, which must never happen."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _table(path: Path, channels=(8, 16, 24)) -> LatencyTable:
    """A small table written by the real writer (timings from given samples)."""
    table = LatencyTable.open(path, META)
    for i, c in enumerate(channels):
        table.append(BlockSpec(Op.parse("ir_k3_e6"), c, c, 8, 8), Timing.from_samples([1.0 + i, 1.1 + i, 1.2 + i]))
    return table


# -- 1. no code from a file ----------------------------------------------------------------------------------------
def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"epoch": 0, "payload": _RunsCommand(marker)}, tmp_path / "supernet.pt")
    with pytest.raises(HwnasError, match="supernet.pt: cannot read the checkpoint"):
        RunDir(tmp_path).load_checkpoint()
    assert not marker.exists()


def test_a_checkpoint_of_random_bytes_is_one_line(tmp_path):
    (tmp_path / "supernet.pt").write_bytes(os.urandom(4096))
    with pytest.raises(HwnasError, match="cannot read the checkpoint"):
        RunDir(tmp_path).load_checkpoint()


def test_a_checkpoint_of_plain_data_without_the_search_state_is_refused(tmp_path):
    torch.save({"epoch": 0}, tmp_path / "supernet.pt")
    with pytest.raises(HwnasError, match="not a hwnas search checkpoint .missing supernet"):
        RunDir(tmp_path).load_checkpoint()


def test_a_saved_checkpoint_reads_back_as_data(tmp_path):
    from hwnas.search.rng import rng_state, set_rng_state

    run = RunDir(tmp_path)
    np.random.seed(3)
    run.save_checkpoint({"epoch": 1, "supernet": {"w": torch.ones(2)}, "strategy": {}, "optimizer": {},
                         "rng": rng_state()})
    expected = np.random.rand(3)
    np.random.seed(99)
    set_rng_state(run.load_checkpoint()["rng"])
    assert np.array_equal(np.random.rand(3), expected)


def _cifar_folder(root: Path, data_batch_1) -> None:
    rng = np.random.default_rng(0)
    for name in ("data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        with (root / name).open("wb") as handle:
            pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}, handle)
    with (root / "batches.meta").open("wb") as handle:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, handle)
    with (root / "data_batch_1").open("wb") as handle:
        pickle.dump(data_batch_1, handle)


def test_a_crafted_cifar_pickle_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    _cifar_folder(tmp_path, {"data": _RunsCommand(marker), "labels": [0]})
    with pytest.raises(ConfigError, match="data_batch_1: not a CIFAR python pickle .refused to load posix.system"):
        load_dataset(f"cifar10:{tmp_path}", 32, "train")
    assert not marker.exists()


@pytest.mark.parametrize("batch, message", [(["not", "a", "dict"], "holds list, expected a dict"),
                                            ({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4},
                                             "unexpected content"),
                                            ({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 99]},
                                             "each in 0..9")])
def test_a_cifar_pickle_of_the_wrong_content_is_one_line(tmp_path, batch, message):
    _cifar_folder(tmp_path, batch)
    with pytest.raises(ConfigError, match=message):
        load_dataset(f"cifar10:{tmp_path}", 32, "train")


# -- 2. one writer at a time, meta.json read-modify-write ----------------------------------------------------------
def test_a_second_writer_of_a_table_is_refused_with_the_holder_named(tmp_path):
    path = tmp_path / "cpu.csv"
    _table(path)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from hwnas.lut.table import table_lock
            with table_lock({str(path)!r}):
                print("held", flush=True)
                sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(HwnasError, match=rf"cpu.csv is being written by pid {holder.pid} .*pass another --lut"):
            with table_lock(path):
                pass
        with pytest.raises(HwnasError, match="is being written by pid"):
            LatencyTable.load(path).update_meta(lambda meta: meta.update(calibration=None))
        message = one_line_error(runner.invoke(app, ["profile", "--lut", str(path), "-r", "8", "--classes", "10"]))
        assert f"is being written by pid {holder.pid}" in message
    finally:
        holder.communicate("\n", timeout=30)
    with table_lock(path):  # released with its holder
        pass


def test_meta_updates_of_two_commands_keep_each_others_fields(tmp_path):
    """`profile` (references) and `calibrate` (calibration) each read the table at start: neither change is lost."""
    path = tmp_path / "cpu.csv"
    _table(path)
    profiling, calibrating = LatencyTable.load(path), LatencyTable.load(path)
    calibrating.update_meta(lambda meta: meta.update(calibration={"32": {"scale": 0.9, "offset_ms": 0.0}}))
    profiling.update_meta(lambda meta: meta.update(references={"k": 0.5}))
    meta = LatencyTable.load(path).meta
    assert meta["calibration"]["32"]["scale"] == 0.9 and meta["references"] == {"k": 0.5}


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    path = tmp_path / "cpu.csv"
    with table_lock(path):
        table = _table(path)
        table.update_meta(lambda meta: meta.update(references={"k": 1.0}))
    assert LatencyTable.load(path).meta["references"] == {"k": 1.0}


# -- 3. a full disk loses nothing ---------------------------------------------------------------------------------
def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_saving_meta_leaves_the_table_usable(tmp_path, monkeypatch):
    path = tmp_path / "cpu.csv"
    _table(path)
    before = (tmp_path / "cpu.meta.json").read_bytes()
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(HwnasError, match="cpu.meta.json: cannot write .No space left on device.; the previous file"):
        LatencyTable.load(path).update_meta(lambda meta: meta.update(calibration={"32": {"scale": 2.0}}))
    monkeypatch.undo()
    assert (tmp_path / "cpu.meta.json").read_bytes() == before
    assert len(LatencyTable.load(path)) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_while_appending_a_row_is_one_line_and_keeps_the_rows(tmp_path, monkeypatch):
    path = tmp_path / "cpu.csv"
    table = _table(path)
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(HwnasError, match="cannot append the row of .*No space left on device.*3 rows before it"):
        table.append(BlockSpec(Op.parse("ir_k5_e6"), 8, 8, 8, 8), Timing.from_samples([1.0, 1.0, 1.0]))
    monkeypatch.undo()
    assert len(LatencyTable.load(path)) >= 3


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    write_atomically(target, "old")
    monkeypatch.setattr(os, "replace", _disk_full)
    with pytest.raises(HwnasError, match="f.json: cannot write"):
        write_atomically(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


# -- 4. a damaged table is refused, never read wrong -------------------------------------------------------------
def _replace_in_row(path: Path, row: int, column: str, value: str) -> None:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[row].split(",")
    fields[header.index(column)] = value
    lines[row] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "1e308", "abc", ""])
def test_a_bad_p50_is_refused_naming_file_line_and_column(tmp_path, value):
    path = tmp_path / "cpu.csv"
    _table(path)
    _replace_in_row(path, 2, "p50_ms", value)
    with pytest.raises(HwnasError, match=r"cpu.csv, line 3, column p50_ms: .*expected a number > 0"):
        LatencyTable.load(path)


@pytest.mark.parametrize("column, value", [("cin", "0"), ("stride", "-2"), ("n", "1.5"), ("std_ms", "-0.1"),
                                           ("p10_ms", "inf"), ("key", "")])
def test_other_bad_cells_are_refused(tmp_path, column, value):
    path = tmp_path / "cpu.csv"
    _table(path)
    _replace_in_row(path, 1, column, value)
    with pytest.raises(HwnasError, match=rf"line 2, column {column}: "):
        LatencyTable.load(path)


def test_a_row_with_an_extra_field_is_refused_not_shifted(tmp_path):
    path = tmp_path / "cpu.csv"
    _table(path)
    lines = path.read_text().splitlines()
    lines[2] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(HwnasError, match=r"cpu.csv, line 3: \d+ fields, expected \d+"):
        LatencyTable.load(path)


def test_a_wrong_header_is_refused(tmp_path):
    path = tmp_path / "cpu.csv"
    _table(path)
    path.write_text(path.read_text().replace("p50_ms", "median", 1))
    with pytest.raises(HwnasError, match="line 1: not a hwnas LUT header .missing column.s. p50_ms"):
        LatencyTable.load(path)


def test_a_row_cut_short_by_a_kill_is_left_out(tmp_path):
    path = tmp_path / "cpu.csv"
    _table(path)
    with path.open("a") as handle:
        handle.write("ir_k3_e6_c8,ir,3,1,6")
    assert len(LatencyTable.load(path)) == 3


def test_a_table_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "cpu.csv"
    _table(path)
    path.write_bytes(b"\xff\xfe" + os.urandom(64))
    with pytest.raises(HwnasError, match="cpu.csv: cannot read as a UTF-8 LUT"):
        LatencyTable.load(path)


@pytest.mark.parametrize("meta, message", [
    ([], "expected a JSON object .* found a list"),
    ({k: v for k, v in {**META, "schema_version": 1, "unit": "milliseconds per image"}.items()
      if k != "fingerprint_id"}, "key 'fingerprint_id' must hold a non-empty string"),
    ({**META, "schema_version": 1, "unit": "milliseconds per image", "calibration": {"s@32": {"scale": "x"}}},
     r"calibration\['s@32'\].scale is 'x'"),
    ({**META, "schema_version": 1, "unit": "milliseconds per image", "calibration": {"s@32": {"scale": -5}}},
     r"calibration\['s@32'\].scale is -5; expected a number > 0"),
    ({**META, "schema_version": 1, "unit": "milliseconds per image", "calibration": {"s@px": {"scale": 1}}},
     "key must be SPACE@RESOLUTION"),
    ({**META, "schema_version": 1, "unit": "milliseconds per image", "calibration": [1]},
     "key 'calibration' must be an object or null"),
])
def test_a_bad_meta_json_is_one_line(tmp_path, meta, message):
    path = tmp_path / "cpu.csv"
    _table(path)
    (tmp_path / "cpu.meta.json").write_text(json.dumps(meta))
    with pytest.raises(HwnasError, match=message):
        LatencyTable.load(path)


def test_nan_in_meta_json_is_refused_and_never_written(tmp_path):
    path = tmp_path / "cpu.csv"
    table = _table(path)
    table.update_meta(lambda meta: meta.update(references={"k": float("nan")}))
    text = (tmp_path / "cpu.meta.json").read_text()
    assert "NaN" not in text and json.loads(text)["references"] == {"k": None}
    (tmp_path / "cpu.meta.json").write_text(text.replace("null", "NaN"))
    with pytest.raises(HwnasError, match="NaN is not a number in strict JSON"):
        LatencyTable.load(path)


def test_a_negative_offset_never_yields_a_negative_prediction(tmp_path):
    arch = Arch.parse("8:relu:ir_k3_e6_c8")
    path = tmp_path / "cpu.csv"
    table = LatencyTable.open(path, META)
    for spec in arch.specs():
        table.append(spec, Timing.from_samples([1.0, 1.0, 1.0]))
    table.update_meta(lambda meta: meta.update(calibration={"s@8": {"scale": 1.0, "offset_ms": -50.0}}))
    model = LatencyModel(LatencyTable.load(path), space="s")
    with pytest.raises(HwnasError, match="predicts .* ms for this network; refit"):
        model.predict(arch)


def test_duplicate_keys_are_counted_and_the_latest_row_wins(tmp_path):
    path = tmp_path / "cpu.csv"
    table = _table(path, channels=(8, 8, 16))
    assert table.duplicates == 1
    again = LatencyTable.load(path)
    assert again.duplicates == 1 and len(again) == 2
    assert again.latency(BlockSpec(Op.parse("ir_k3_e6"), 8, 8, 8, 8).key) == pytest.approx(2.1)


def test_lut_show_of_a_damaged_table_is_one_line(tmp_path):
    path = tmp_path / "cpu.csv"
    _table(path)
    _replace_in_row(path, 1, "p50_ms", "-1")
    message = one_line_error(runner.invoke(app, ["lut", "show", "--lut", str(path)]))
    assert "line 2, column p50_ms" in message


_VALID = None


def _valid_files(tmp_path_factory) -> tuple[str, str]:
    global _VALID
    if _VALID is None:
        folder = tmp_path_factory.mktemp("valid")
        _table(folder / "cpu.csv")
        _VALID = ((folder / "cpu.csv").read_text(), (folder / "cpu.meta.json").read_text())
    return _VALID


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10_000), cut=st.integers(0, 40), insert=st.text(max_size=30),
       in_meta=st.booleans())
def test_any_edit_of_a_table_parses_or_is_one_line(tmp_path_factory, position, cut, insert, in_meta):
    rows, meta = _valid_files(tmp_path_factory)
    folder = tmp_path_factory.mktemp("edit")
    target = meta if in_meta else rows
    at = position % (len(target) + 1)
    edited = target[:at] + insert + target[at + cut:]
    (folder / "cpu.csv").write_text(rows if in_meta else edited)
    (folder / "cpu.meta.json").write_text(edited if in_meta else meta)
    try:
        table = LatencyTable.load(folder / "cpu.csv")
    except HwnasError as error:
        assert "\n" not in str(error)
        return
    try:
        latencies = [table.latency(key) for key in table.keys]
    except HwnasError as error:  # e.g. a row whose fingerprint was edited: mixing setups needs --force
        assert "\n" not in str(error)
        return
    assert all(0 < value < float("inf") for value in latencies)


@pytest.mark.parametrize("strategy", ["hardcore", "proxyless", "fbnet"])
def test_a_search_with_a_calibration_that_makes_latencies_negative_is_one_line(tmp_path_factory, tmp_path, strategy):
    """A damaged calibration (offset far below the block sums) must stop a search at once, naming the table, instead
    of a search toward a negative budget ("predicted -0.58 ms of -0.58 ms") or a blamed learning rate."""
    from hwnas.search.runner import run_search
    from tests.search_helpers import measured_model, tiny_chain, tiny_dense, tiny_search_config

    folder = tmp_path_factory.getbasetemp() / "search"
    folder.mkdir(exist_ok=True)
    measured_model(folder / "cpu.csv", tiny_chain(folder), tiny_dense())
    for suffix in (".csv", ".meta.json"):
        (tmp_path / f"cpu{suffix}").write_bytes((folder / f"cpu{suffix}").read_bytes())
    space = tiny_chain(folder)
    key = f"{space.name}@{space.resolution}"
    LatencyTable.load(tmp_path / "cpu.csv").update_meta(
        lambda meta: meta.update(calibration={key: {"scale": 1.0, "offset_ms": -10.0}}))
    with pytest.raises(HwnasError, match="cpu.csv: predicted latencies of space tiny span .* non-positive"):
        run_search(tiny_search_config(folder, strategy, lut=str(tmp_path / "cpu.csv")), tmp_path / "run")
    assert not (tmp_path / "run").exists()
