"""devices.yaml: every shipped device loads; every kind of mistake is one line naming file, device and key."""

import pytest
from typer.testing import CliRunner

from hwnas.cli import app
from hwnas.device import RUNTIMES, get_device, load_devices
from hwnas.errors import ConfigError

runner = CliRunner()


def test_shipped_devices_load_and_cover_the_targets():
    devices = load_devices()
    for name in ("cpu", "cpu-mt", "gpu", "jetson", "pixel", "raspi", "mac", "iphone"):
        assert name in devices
        assert devices[name].runtime in RUNTIMES
    assert devices["cpu"].threads == 1 and devices["cpu-mt"].threads == 0
    assert devices["jetson"].transport == "ssh://jetson" and devices["pixel"].transport.startswith("adb://")


@pytest.mark.parametrize("body, message", [
    ("devices:\n  x:\n    runtime: onnxruntime\n    thread: 2\n", "device 'x': unknown key 'thread'"),
    ("devices:\n  x:\n    runtime: onnxruntime\n    threads: two\n", "device 'x': key 'threads' must be int"),
    ("devices:\n  x:\n    runtime: openvino\n", "device 'x': key 'runtime' is 'openvino'"),
    ("devices:\n  x:\n    precision: fp32\n", "device 'x': missing key 'runtime'"),
    ("devices:\n  x:\n    runtime: tflite\n    precision: fp8\n", "key 'precision' is 'fp8'"),
    ("devices:\n  x:\n    runtime: tflite\n    transport: telnet://box\n", "key 'transport' is 'telnet://box'"),
    ("devices:\n  x:\n    runtime: tflite\n    threads: -1\n", "'threads' must be >= 0"),
    ("devices:\n  x: [1, 2]\n", "expected a mapping of settings"),
    ("gadgets:\n  x: {}\n", "expected a top-level 'devices:' mapping"),
    ("devices: {x: {runtime: tflite}\n", "is not valid YAML"),
])
def test_bad_devices_file_is_one_clear_line(tmp_path, body, message):
    path = tmp_path / "mine.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message) as error:
        load_devices(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_user_file_adds_and_overrides(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("devices:\n  cpu:\n    runtime: onnxruntime\n    threads: 2\n  box:\n    runtime: tflite\n")
    assert get_device("cpu", path).threads == 2
    assert get_device("box", path).runtime == "tflite"


def test_unknown_device_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown device 'nope'.*known: cpu"):
        get_device("nope")


def test_cli_reports_bad_devices_file_without_traceback(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("devices:\n  x:\n    runtime: onnxruntime\n    color: red\n")
    result = runner.invoke(app, ["devices", "--devices", str(path)])
    assert result.exit_code == 1
    assert "unknown key 'color'" in result.output and "Traceback" not in result.output


def test_cli_lists_devices_as_json():
    result = runner.invoke(app, ["devices", "--json"])
    assert result.exit_code == 0
    assert "jetson" in result.output and '"runtime": "tensorrt"' in result.output


def test_profile_on_unreachable_board_is_one_line(tmp_path):
    result = runner.invoke(app, ["profile", "--device", "jetson", "--lut-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "jetson" in result.output and "Traceback" not in result.output
    assert result.output.count("error:") == 1
