"""The documentation runs as written: every `hwnas` command in README.md and docs/*.md names a real command and only
options that command's --help lists, the fast ones run here, and the README stays a short user's document."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hwnas.cli.common import load_arch
from hwnas.device import get_device
from hwnas.lut.build import build_lut
from hwnas.profilers.base import MeasureSettings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
README_MAX_BYTES = 15_000
FIRST_SCREEN_LINES = 60
INSTALL = 'pip install -e ".[dev]"'
TEST_COMMAND = "python -m pytest -q"
QUICK = MeasureSettings(warmup=2, warmup_s=0.0, min_repeats=5, max_repeats=30, target_ci=0.05, budget_s=0.1)

# Documented commands run here as written (in a folder holding a LUT of the blocks they predict), with what their
# stdout must show. Each must appear verbatim in the docs, so the list cannot drift from them.
FAST = {
    "hwnas devices": r"cpu-mt",
    "hwnas devices --check": r"onnxruntime",
    "hwnas lut show --device cpu": r"luts/cpu\.csv: \d+ blocks",
    "hwnas lut predict mobilenetv2 --device cpu --resolution 64 --classes 10 --breakdown":
        r"[\d.]+ ms on cpu \(plain sum of blocks",
    'hwnas diff "cells:nb201:32:c16_l15_k10:cell=|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|'
    'nor_conv_3x3~1|skip_connect~2|" "cells:nb201:32:c16_l15_k10:cell=|nor_conv_3x3~0|+|nor_conv_3x3~0|'
    'nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"': r"M\(A, B\) = 0\.\d+",
    'hwnas export --arch "64:relu6:cn_k3_s2_c16,ds_k3_c16,ir_r2_k3_s2_e6_c24,cn_k1_c256,fc_c10" --to onnx '
    "--dynamic-batch --opset 13 --json": r'"sha256"',
}


# --- reading the docs ---------------------------------------------------------------------------------------------

def shell_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each fenced code block in a shell language."""
    blocks, inside, language, start, lines = [], False, "", 0, []
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*```(\S*)\s*$", line)
        if fence and not inside:
            inside, language, start, lines = True, fence.group(1), number + 1, []
        elif fence and inside:
            inside = False
            if language in SHELL_LANGUAGES:
                blocks.append((start, lines))
        elif inside:
            lines.append(line)
    return blocks


def shell_lines(start: int, lines: list[str]) -> list[tuple[int, str]]:
    """Logical shell lines of a block (backslash continuations joined, here-document bodies left out)."""
    result, pending, first, heredoc_end = [], "", 0, None
    for number, line in enumerate(lines, start):
        if heredoc_end is not None:
            heredoc_end = None if line.strip() == heredoc_end else heredoc_end
            continue
        if not pending:
            first = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full, pending = pending + line, ""
        marker = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", full)
        if marker:
            heredoc_end = marker.group(1)
        result.append((first, full.strip()))
    return result


def hwnas_commands(line: str) -> list[list[str]]:
    """Each `hwnas ...` command on a shell line as argv (up to the next shell operator); `$(which hwnas)` too."""
    lexer = shlex.shlex(line.replace("$(which hwnas)", "hwnas"), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    commands = []
    for index, token in enumerate(tokens):
        if token == "hwnas":
            argv = []
            for word in tokens[index:]:
                if word and all(c in "();<>|&" for c in word):
                    break
                argv.append(word)
            commands.append(argv)
    return commands


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(where, the command as written, argv) of every hwnas command in the README's and docs' code blocks."""
    found = []
    for path in DOCS:
        for start, lines in shell_blocks(path.read_text()):
            for number, line in shell_lines(start, lines):
                for argv in hwnas_commands(line):
                    found.append((f"{path.relative_to(ROOT)}:{number}", line, argv))
    return found


COMMANDS = documented_commands()


# --- what --help says -----------------------------------------------------------------------------------------------

def _environment() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "COLUMNS": "200",
            "NO_COLOR": "1"}


@functools.cache
def help_of(path: tuple[str, ...]) -> dict | None:
    """Commands, options (name -> takes a value) and arguments (name, required) that `hwnas PATH --help` lists;
    None when PATH is not a command."""
    result = subprocess.run(["hwnas", *path, "--help"], capture_output=True, text=True, env=_environment(),
                            timeout=120)
    if result.returncode != 0:
        return None
    panel, commands, options, arguments = None, set(), {}, []
    for line in result.stdout.splitlines():
        title = re.match(r"^╭─ (\w+)", line)
        if title:
            panel = title.group(1)
            continue
        if panel == "Commands" and (row := re.match(r"^│ ([a-z][\w-]*)\s{2,}", line)):
            commands.add(row.group(1))
        elif panel == "Options" and (row := re.match(r"^│\s{1,6}(?:\*\s+)?((?:-{1,2}[A-Za-z][\w-]*\s+)+)(<[^>]*>)?",
                                                      line)):
            for name in row.group(1).split():
                options[name] = row.group(2) not in (None, "<bool>") and not name.startswith("--no-")
        elif panel == "Arguments" and (row := re.match(r"^│\s{1,6}(\*)?\s*([a-z_]+)\s+<", line)):
            arguments.append((row.group(2), bool(row.group(1))))
    assert options, f"could not read the options of `hwnas {' '.join(path)} --help`:\n{result.stdout}"
    return {"commands": commands, "options": options, "arguments": arguments}


def check_command(argv: list[str]) -> tuple[str, ...]:
    """Assert `argv` names a hwnas command and uses only options its --help lists, with as many positional
    arguments as it takes; returns the command path (e.g. ('lut', 'predict'))."""
    assert argv[0] == "hwnas"
    path: tuple[str, ...] = ()
    rest = argv[1:]
    spec = help_of(path)
    while spec["commands"]:
        assert rest and rest[0] in spec["commands"], \
            f"`hwnas {' '.join(path)}` has no command {rest[:1]}; it has {sorted(spec['commands'])}"
        path, rest = (*path, rest[0]), rest[1:]
        spec = help_of(path)
        assert spec is not None, f"`hwnas {' '.join(path)} --help` failed"
    positional, words = 0, iter(rest)
    for word in words:
        if word.startswith("-") and len(word) > 1:
            name, equals, _ = word.partition("=")
            assert name in spec["options"], (f"`hwnas {' '.join(path)}` has no option {name}; --help lists "
                                             f"{sorted(spec['options'])}")
            if spec["options"][name] and not equals:
                assert next(words, None) is not None, f"{name} needs a value"
        else:
            positional += 1
    required = sum(1 for _, needed in spec["arguments"] if needed)
    assert required <= positional <= len(spec["arguments"]), \
        f"`hwnas {' '.join(path)}` takes {required}..{len(spec['arguments'])} arguments, given {positional}: {rest}"
    return path


def option_value(argv: list[str], *names: str) -> str | None:
    """The value given to the first of `names` in argv (`--name VALUE` or `--name=VALUE`)."""
    for index, word in enumerate(argv):
        name, equals, value = word.partition("=")
        if name in names:
            return value if equals else argv[index + 1]
    return None


# --- the tests ------------------------------------------------------------------------------------------------------

def test_docs_have_commands():
    """The extraction finds the commands of every page (an empty list would make the checks below pass vacuously)."""
    pages = {where.split(":")[0] for where, _, _ in COMMANDS}
    assert {"README.md", "docs/luts.md", "docs/search.md", "docs/cells.md", "docs/devices.md",
            "docs/export.md"} <= pages
    commands = {" ".join(argv[1:3]) for _, _, argv in COMMANDS}
    for name in ("devices", "profile --device", "search --device", "train runs/demo", "diff", "lut show",
                 "lut predict", "lut calibrate", "lut validate"):
        assert any(command.startswith(name) for command in commands), name
    assert any("export" in c for c in commands)


def test_extraction_reads_shell_syntax():
    """Continuations are joined, comments and here-documents skipped, commands split at shell operators."""
    text = ("```\nhwnas lut show \\\n  --device cpu   # a comment\ncat > f.yaml <<'YAML'\nhwnas: not a command\nYAML\n"
            "torchrun --standalone $(which hwnas) search --out runs/x | tee log\n```\n```yaml\nhwnas devices\n```\n")
    found = [argv for start, lines in shell_blocks(text) for _, line in shell_lines(start, lines)
             for argv in hwnas_commands(line)]
    assert found == [["hwnas", "lut", "show", "--device", "cpu"], ["hwnas", "search", "--out", "runs/x"]]


@pytest.mark.parametrize("where,line,argv", COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_documented_command_parses(where, line, argv):
    """Every documented command names a real command, only options its --help lists, and its arguments."""
    check_command(argv)


def test_checker_refuses_what_help_does_not_list():
    """The check fails on a wrong command, an unknown option or a missing argument (so the test above can fail)."""
    for wrong in (["hwnas", "serch", "--out", "x"], ["hwnas", "lut", "show", "--no-such-flag"],
                  ["hwnas", "lut", "predict", "--device", "cpu"], ["hwnas", "train", "a", "b"]):
        with pytest.raises(AssertionError):
            check_command(wrong)


@pytest.fixture(scope="module")
def doc_folder(tmp_path_factory):
    """A working folder with luts/cpu.csv holding the blocks of every fast `lut predict` command (quick timing)."""
    folder = tmp_path_factory.mktemp("docs")
    specs = []
    for command in FAST:
        argv = hwnas_commands(command)[0]
        if argv[1:3] == ["lut", "predict"]:
            resolution, classes = option_value(argv, "--resolution", "-r"), option_value(argv, "--classes")
            network = load_arch(argv[3], int(resolution) if resolution else None, int(classes) if classes else None)
            specs += network.specs()
    build_lut(get_device("cpu"), specs, folder / "luts" / "cpu.csv", QUICK, steadiness=None)
    return folder


@pytest.mark.parametrize("command", list(FAST), ids=[c[:50] for c in FAST])
def test_fast_command_runs(command, doc_folder):
    """The fast documented commands run as written (through the shell) and print what they promise."""
    assert command in {line for _, line, _ in COMMANDS}, f"not in the docs as written: {command}"
    result = subprocess.run(["bash", "-c", command], cwd=doc_folder, capture_output=True, text=True,
                            env=_environment(), timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert re.search(FAST[command], output), output
    if "--json" in command:
        json.loads(result.stdout)


def test_readme_is_a_short_users_document():
    """At most 15 KB; install, first run and test command on the first screen; the test command is CI's."""
    text = README.read_text()
    assert len(text.encode()) <= README_MAX_BYTES, f"README.md is {len(text.encode())} bytes"
    first_screen = "\n".join(text.splitlines()[:FIRST_SCREEN_LINES])
    assert INSTALL in first_screen and TEST_COMMAND in first_screen
    assert re.search(r"^hwnas search --device cpu .*--data digits .*--out runs/demo$", first_screen, re.M)
    ci_test_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_test_command.startswith(TEST_COMMAND)
    assert re.search(f"^{re.escape(ci_test_command)}$", first_screen, re.M), "the README shows .ci/run's test command"
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / link).exists(), f"README links to a missing file: {link}"


def test_bench_readme_lists_every_script():
    """bench/README.md has a row per benchmark script, each with a command that runs that script."""
    text = (ROOT / "bench" / "README.md").read_text()
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")} - {"search_common.py"}
    for script in scripts:
        assert re.search(rf"^\| `{re.escape(script)}` \|.*`python bench/{re.escape(script)}[ `]", text, re.M), script
    for named in re.findall(r"python (bench/\w+\.py)", text):
        assert (ROOT / named).exists(), named


def test_results_name_committed_json():
    """Every JSON file RESULTS.md quotes outside its 'not kept' section is in bench/results/."""
    text = (ROOT / "bench" / "RESULTS.md").read_text()
    kept, _, not_kept = text.partition("## Measured by earlier sessions")
    assert not_kept, "RESULTS.md lost its section of figures whose JSON was not kept"
    for named in re.findall(r"bench/results/[\w./-]+\.json", kept):
        assert (ROOT / named).exists(), f"RESULTS.md quotes {named}, which is not committed"


def _first_run() -> list[str]:
    """The commands of the README's first code block that runs `hwnas search` (the main job)."""
    for start, lines in shell_blocks(README.read_text()):
        found = [line for _, line in shell_lines(start, lines) if hwnas_commands(line)]
        if any(line.startswith("hwnas search") for line in found):
            return found
    raise AssertionError("README.md has no `hwnas search` block")


@pytest.mark.slow
def test_first_run_as_written(tmp_path):
    """The README's main job (search, then train, on the local CPU with digits) runs as written in a fresh folder,
    and the searched network was measured within its budget on the device."""
    for command in _first_run():
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True,
                                env=_environment(), timeout=1200)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    summary = json.loads((tmp_path / "runs" / "demo" / "search.json").read_text())
    assert summary["measured_ci_upper_ms"] <= summary["budget_ms"] * (1 + 1e-9)
    assert json.loads((tmp_path / "runs" / "demo" / "train.json").read_text())["test_acc"] > 0.5
