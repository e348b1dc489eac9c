"""Issue 31, quieter defects of `hwnas search`: a resume never shortens a run, a bad configuration is refused before
any data, measurement or run folder, counts are bounded, Ctrl-C says how to resume, profiler work folders never
outlive their process, and `--help` shows the defaults and every registered strategy."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hwnas.cli import app
from hwnas.config import SearchConfig
from hwnas.errors import ConfigError
from hwnas.search.run_folder import RunDir
from hwnas.search.runner import SearchInterrupted, run_search
from tests.search_helpers import one_line_error, search_args

runner = CliRunner()


def _args(folder, out, *extra: str) -> list[str]:
    return search_args(folder, out, "--latency-budget", "50%", *extra, epochs=None)


_error = one_line_error


class _Epochs:
    """A reporter that records the epochs a search announces."""

    def __init__(self):
        self.started: list[tuple[int, int]] = []

    def profiling(self, total): ...
    def profiled(self, key, measured): ...
    def step(self, epoch, step, steps, metrics): ...
    def epoch_finished(self, record): ...
    def note(self, text): ...

    def epoch_started(self, epoch, epochs, steps):
        self.started.append((epoch, epochs))


# -- a: a resume may extend a run, never shorten it -----------------------------------------------------------------
def test_resume_refuses_to_shorten_a_finished_run(folder, tmp_path):
    out = tmp_path / "run"
    done = runner.invoke(app, _args(folder, out, "--epochs", "2", "--warmup-epochs", "1", "--json"))
    assert done.exit_code == 0, done.output
    written = {name: (out / name).read_bytes() for name in ("config.yaml", "search.json", "history.csv")}
    stamps = {name: (out / name).stat().st_mtime_ns for name in written}

    shorter = runner.invoke(app, ["search", "--out", str(out), "--resume", "--epochs", "1"])
    assert f"{out} already ran 2 epochs; --epochs 1 cannot shorten it" in _error(shorter)
    assert {name: (out / name).read_bytes() for name in written} == written
    assert {name: (out / name).stat().st_mtime_ns for name in written} == stamps

    reporter = _Epochs()  # a finished run resumed as it is re-derives without announcing an epoch "3/2"
    result = run_search(None, out, resume=True, reporter=reporter)
    assert reporter.started == [] and result.config.epochs == 2 and len(result.history) == 2


# -- b: a configuration error comes before data, measurement and the run folder -------------------------------------
@pytest.mark.parametrize("extra,message", [
    (["--strategy", "fbnet-v9"], "unknown strategy 'fbnet-v9' (known: fbnet, proxyless, hardcore, densenas, darts"),
    (["-p", "colour=1"], "strategy 'fbnet' parameters: unknown key 'colour'"),
    (["-p", "tau0=hot"], "strategy 'fbnet' parameters: key 'tau0' must be float, got 'hot'"),
    (["-p", "budget_control=sideways"],
     "strategy 'fbnet' parameters: key 'budget_control' must be one of dual|argmax|fixed, got 'sideways'"),
    (["--strategy", "hardcore", "-p", "samples=0"],
     "strategy 'hardcore': 0 < max_gamma <= 1, 0 <= momentum < 1 and samples >= 1 needed"),
    (["--strategy", "sp-darts", "--space", "darts", "-p", "order=3"],
     "strategy 'sp-darts' parameters: key 'order' must be one of 1|2, got 3"),
    (["--strategy", "densenas"], "strategy 'densenas' searches dense spaces; space 'tiny' is a chain space"),
    (["--strategy", "darts"], "strategy 'darts' searches cell spaces; space 'tiny' is a chain space"),
    (["--space", "no-such-space"], "unknown space 'no-such-space'"),
    (["--latency-budget", "20"], "--latency-budget '20': expected a number with a unit"),
    (["--epochs", "2", "--warmup-epochs", "3"], "warmup_epochs 3: expected 0..epochs (2)"),
])
def test_bad_configuration_is_refused_before_any_work(folder, tmp_path, extra, message):
    """The data source does not exist and the LUT is empty: had the search loaded data or measured a block first,
    the error would name those instead, and nothing may be written (run folder, LUT)."""
    out, lut = tmp_path / "runs" / "x", tmp_path / "empty.csv"
    args = [*_args(folder, out), "--lut", str(lut), "--data", str(tmp_path / "no-such-data"), *extra]
    started = time.perf_counter()
    text = _error(runner.invoke(app, args))
    assert message in text
    assert not out.parent.exists() and not lut.exists()
    assert time.perf_counter() - started < 10


def test_config_file_values_are_checked_before_any_work(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"budget": "50%", "data": {"batch_size": 0, "source": str(tmp_path / "none")}}))
    out = tmp_path / "run"
    text = _error(runner.invoke(app, ["search", "--config", str(config), "--out", str(out)]))
    assert "data.batch_size 0: expected at least 1" in text and not out.exists()
    with pytest.raises(ConfigError, match=r"budget_floor 1.5: expected a share in \[0, 1\)"):
        run_search(SearchConfig(budget_floor=1.5), tmp_path / "lib")
    assert not (tmp_path / "lib").exists()


def test_a_float_written_without_a_dot_is_read_as_a_float():
    """YAML 1.1 reads `3e-3` as a string; -p and config files take it as the number a user means."""
    from hwnas.config import parse_assignments, parse_params
    from hwnas.strategies.darts import DartsParams

    params = parse_params(DartsParams, parse_assignments(["arch_lr=3e-3", "latency_weight=1E+1"]), "-p")
    assert params.arch_lr == 3e-3 and params.latency_weight == 10.0
    with pytest.raises(ConfigError, match="key 'arch_lr' must be float, got '3e-3x'"):
        parse_params(DartsParams, parse_assignments(["arch_lr=3e-3x"]), "-p")


# -- c: counts on the command line are bounded ----------------------------------------------------------------------
@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--epochs", "0"), ("--warmup-epochs", "-1"),
                                        ("--threads", "-1"), ("--candidates", "-1"), ("--limit", "-5"),
                                        ("--train-limit", "-1"), ("--resolution", "0"), ("--resolution", "100000"),
                                        ("--weight-lr", "-0.1")])
def test_counts_are_bounded(folder, tmp_path, flag, value):
    out = tmp_path / "run"
    result = runner.invoke(app, [*_args(folder, out), flag, value])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and f"Invalid value for '{flag}'" in " ".join(result.output.split())
    assert not out.exists()


# -- d: Ctrl-C says where the checkpoint stands and how to resume ---------------------------------------------------
def _rows(path: Path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def _interruptible() -> None:
    """In the child before exec: Ctrl-C's default action. A shell starts background jobs (`pytest ... &`) with
    SIGINT ignored, children inherit that, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow  # runs searches / profilers in subprocesses
def test_sigint_says_which_epoch_is_saved_and_how_to_resume(folder, tmp_path):
    out = tmp_path / "my run"  # a space in the path: the printed command must quote it
    command = [sys.executable, "-c", "from hwnas.cli import main; main()",
               *_args(folder, out, "--epochs", "40", "--warmup-epochs", "1", "--strategy", "proxyless")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, "COLUMNS": "400"},
                               preexec_fn=_interruptible)
    deadline = time.monotonic() + 120
    while _rows(out / "history.csv") < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    saved = int(RunDir(out).load_checkpoint()["epoch"])
    lines = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(lines) == 1, stderr
    assert f"holds it after epoch {saved + 1} of 40" in lines[0]
    assert f"resume with `hwnas search --out {shlex.quote(str(out))} --resume`" in lines[0]

    resumed = runner.invoke(app, ["search", "--out", str(out), "--resume", "--epochs", str(saved + 1)])
    assert resumed.exit_code == 0, resumed.output  # the checkpoint the line names resumes (here: derives at once)


def test_interrupt_before_the_first_epoch_says_nothing_is_saved(tmp_path):
    message = str(SearchInterrupted(tmp_path / "run", None, 4))
    assert message.startswith("search interrupted before its first epoch was saved") and "\n" not in message
    assert "after epoch 3 of 4" in str(SearchInterrupted(tmp_path / "run", 2, 4))


# -- e: profiler work folders never outlive their process -----------------------------------------------------------
_PROFILER = textwrap.dedent("""
    import sys, time
    from hwnas.device import get_device
    from hwnas.profilers import get_profiler

    profiler = get_profiler(get_device("cpu"))
    print(profiler.workdir, flush=True)
    if sys.argv[1] == "raise":
        raise RuntimeError("boom")
    if sys.argv[1] == "wait":
        time.sleep(120)
""")


def _workdirs(folder: Path) -> list[Path]:
    return sorted(folder.glob("hwnas-*"))


@pytest.mark.parametrize("ending", ["exit", "raise", "SIGINT", "SIGTERM", "SIGKILL"])
@pytest.mark.slow  # runs searches / profilers in subprocesses
def test_profiler_workdir_is_removed_however_the_process_ends(tmp_path, ending):
    mode = ending if ending in ("exit", "raise") else "wait"
    process = subprocess.Popen([sys.executable, "-c", _PROFILER, mode], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp_path)},
                               preexec_fn=_interruptible)
    workdir = Path(process.stdout.readline().strip())
    assert workdir.parent == tmp_path and re.fullmatch(rf"hwnas-{process.pid}-\w+", workdir.name)
    if mode == "wait":
        assert workdir.is_dir()
        process.send_signal(getattr(signal, ending))
    process.communicate(timeout=60)
    if ending == "SIGTERM":
        assert process.returncode == 128 + signal.SIGTERM
    if ending == "SIGKILL":  # nothing runs in a killed process: the next profiler removes its folder
        assert workdir.is_dir()
        live = tmp_path / f"hwnas-{os.getpid()}-live"  # a running process's folder stays
        other = tmp_path / "hwnas-bench-keep"  # so do folders hwnas did not name after a pid
        live.mkdir()
        other.mkdir()
        from hwnas.device import get_device
        from hwnas.profilers import get_profiler

        saved, tempfile.tempdir = tempfile.tempdir, str(tmp_path)
        try:
            with get_profiler(get_device("cpu")) as profiler:
                assert profiler.workdir.is_dir()
        finally:
            tempfile.tempdir = saved
        assert not profiler.workdir.exists()
        assert set(_workdirs(tmp_path)) == {live, other}
    else:
        assert not workdir.exists() and _workdirs(tmp_path) == []


# -- f: --help shows the defaults and every registered strategy -----------------------------------------------------
def test_search_help_shows_defaults_and_every_strategy():
    from hwnas.strategies import STRATEGIES

    result = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Search strategy: " + " | ".join(STRATEGIES) + " (default: fbnet)." in text
    defaults = SearchConfig()
    assert f"Search epochs (default: {defaults.epochs})." in text
    assert f"Images per step and process (default: {defaults.data.batch_size})." in text
    assert f"(default: {defaults.device})" in text and f"(default: {defaults.space})" in text
    assert not re.search(r"\w \.", text), "a default vanished from the help (rich took '[default: ...]' for markup)"
