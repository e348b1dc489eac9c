"""Issue 31, items 6 and 8: a value out of bounds or a broken file where it enters (architecture strings, arch.json,
devices files, CLI flags) is one `error:` line naming the value, never a traceback or a hang."""

import json

import pytest
from typer.testing import CliRunner

from hwnas.arch import Arch
from hwnas.blocks import BlockSpec, Op
from hwnas.cli import app
from hwnas.config import SearchConfig, save_config
from hwnas.device import load_devices
from hwnas.errors import HwnasError
from hwnas.spaces.published import PUBLISHED, get_published
from hwnas.units import MAX_CHANNELS, MAX_REPEATS, MAX_RESOLUTION

runner = CliRunner()
SMALL = "32:relu:cn_k3_s2_c16,ir_k3_e3_c16,fc_c10"


def refused(args, *named):
    """Run `hwnas ARGS`: it must fail with exactly one `error:` line naming each of `named`, and no traceback."""
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for text in named:
        assert text in errors[0], errors[0]
    return errors[0]


def raises_one_line(function, *args, match: str):
    with pytest.raises(HwnasError, match=match) as error:
        function(*args)
    assert "\n" not in str(error.value)
    return str(error.value)


# -- item 6: no hang, no terabytes ----------------------------------------------------------------------------
def test_lut_predict_refuses_a_row_repeated_a_hundred_million_times(tmp_path):
    refused(["lut", "predict", "32:relu:ir_r100000000_k3_e1_c16,fc_c10", "--lut-dir", tmp_path],
            "repeats is 100000000", f"1..{MAX_REPEATS}")


def test_lut_predict_refuses_resolution_100000(tmp_path):
    refused(["lut", "predict", "mobilenetv2", "--resolution", "100000", "--lut-dir", tmp_path],
            "--resolution is 100000", f"1..{MAX_RESOLUTION}")


def test_export_refuses_resolution_100000(tmp_path):
    refused(["export", "--arch", "mobilenetv2", "--resolution", "100000", "--out", tmp_path / "x"],
            "--resolution is 100000")


@pytest.mark.parametrize("field, value", [("r", 65), ("k", 33), ("s", 33), ("d", 33), ("e", 17), ("c", 32769)])
def test_arch_string_fields_have_an_upper_bound(field, value):
    row = {"r": "ir_r{}_k3_e1_c16", "k": "ir_k{}_e1_c16", "s": "ir_k3_s{}_e1_c16", "d": "cn_k3_d{}_c16",
           "e": "ir_k3_e{}_c16", "c": "cn_k3_c{}"}[field].format(value)
    raises_one_line(Arch.parse, f"32:relu:{row},fc_c10", match=f"is {value}(\\.0)?, expected")


def test_bounds_admit_real_vision_models():
    for name in PUBLISHED:
        assert get_published(name).specs()
    wide = Arch.parse(f"{MAX_RESOLUTION}:relu:cn_k31_s32_d2_c64,ir_r{MAX_REPEATS}_k3_e16_c64,fc_c21843_h4096")
    assert wide.resolution == MAX_RESOLUTION and len(wide.specs()) == MAX_REPEATS + 2
    assert Arch.parse(f"32:relu:fc_c{MAX_CHANNELS}").num_classes == MAX_CHANNELS


# -- item 8: bad values are one line ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-1"])
def test_lut_predict_refuses_resolution_below_one(tmp_path, value):
    refused(["lut", "predict", "mobilenetv2", "--resolution", value, "--lut-dir", tmp_path], f"--resolution is {value}")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_export_refuses_resolution_below_one(tmp_path, value):
    refused(["export", "--arch", "mobilenetv2", "--resolution", value, "--out", tmp_path / "x"],
            f"--resolution is {value}")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_profile_refuses_resolution_below_one(tmp_path, value):
    refused(["profile", "--resolution", value, "--lut-dir", tmp_path], f"--resolution is {value}")


def test_lut_show_refuses_resolution_zero(tmp_path):
    """It used to load the space at 0 px and report "0/111 blocks measured"."""
    refused(["lut", "show", "--space", "fbnet", "--resolution", "0", "--lut-dir", tmp_path], "--resolution is 0")


def test_classes_zero_is_refused(tmp_path):
    refused(["lut", "predict", "mobilenetv2", "--classes", "0", "--lut-dir", tmp_path], "--classes is 0")


def test_lut_predict_refuses_stride_zero(tmp_path):
    refused(["lut", "predict", "32:relu:cn_k3_s0_c16,fc_c10", "--lut-dir", tmp_path], "stride is 0")


@pytest.mark.parametrize("channels", ["0", "-5"])
def test_lut_predict_refuses_channels_below_one(tmp_path, channels):
    refused(["lut", "predict", f"32:relu:cn_k3_c{channels},fc_c10", "--lut-dir", tmp_path],
            f"channels is {channels}")


@pytest.mark.parametrize("channels", ["0", "-5"])
def test_export_arch_refuses_channels_below_one(tmp_path, channels):
    refused(["export", "--arch", f"32:relu:cn_k3_c{channels},fc_c10", "--out", tmp_path / "x"],
            f"channels is {channels}")


def test_export_arch_refuses_stride_zero(tmp_path):
    refused(["export", "--arch", "32:relu:cn_k3_s0_c16,fc_c10", "--out", tmp_path / "x"], "stride is 0")


def test_lut_calibrate_refuses_zero_networks(tmp_path):
    refused(["lut", "calibrate", "--networks", "0", "--lut-dir", tmp_path], "--networks is 0")


def test_lut_validate_refuses_zero_samples(tmp_path):
    refused(["lut", "validate", "--samples", "0", "--lut-dir", tmp_path], "--samples is 0")


@pytest.mark.parametrize("row, named", [
    ("ir_k4_e3_c16", "kernel is 4"),  # even: same padding would change the size (residual add fails)
    ("ir_k0_e3_c16", "kernel is 0"),
    ("ir_k3_enan_c16", "expansion is nan"),
    ("ir_k3_einf_c16", "expansion is inf"),
    ("ir_k3_e3_se2_c16", "se is 2.0"),
    ("cn_k3_d0_c16", "dilation is 0"),
    ("cn_k3_g0_c16", "groups is 0"),
    ("fc_c10_h-1", "hidden is -1"),
])
def test_op_fields_out_of_bounds_are_one_line(row, named):
    raises_one_line(Arch.parse, f"32:relu:{row}", match=named)


def test_groups_that_do_not_divide_the_channels_are_one_line():
    arch = Arch.parse("32:relu:cn_k3_c16,ir_k3_e3_g3_c24,fc_c10")
    raises_one_line(arch.specs, match="groups 3 must divide")


def test_grouped_inverted_residual_builds_with_any_dividing_group():
    """g3 divides 24 -> 48, and the expanded width is rounded to a multiple of 24, so the block builds."""
    spec = BlockSpec(Op.parse("ir_k3_e3_g3"), 24, 48, 8, 8)
    assert spec.build()(__import__("torch").zeros(1, 24, 8, 8)).shape == (1, 48, 8, 8)


@pytest.mark.parametrize("text, named", [
    ("²:relu:fc_c10", "not an input resolution"),  # str.isdigit() is True, int() refuses it
    ("9" * 5000 + ":relu:fc_c10", "input resolution is"),  # past Python's int-from-str digit limit
    ("0:relu:fc_c10", "input resolution is 0,"),
])
def test_resolution_in_an_arch_string_is_one_line(text, named):
    raises_one_line(Arch.parse, text, match=named)


def test_classes_out_of_bounds_are_one_line():
    raises_one_line(Arch.parse(SMALL).with_classes, 0, match="channels is 0")
    raises_one_line(get_published, "mobilenetv2", None, -3, match="channels is -3")


@pytest.mark.parametrize("text, named", [
    ("cells:darts:²:c16_l8_k10:normal=|sep_conv_3x3~0|", "input resolution is '²'"),
    ("cells:darts:32:c16_l100000000_k10:normal=|sep_conv_3x3~0|", "cell network layers is 100000000,"),
    ("cells:darts:32:c0_l8_k10:normal=|sep_conv_3x3~0|", "cell network channels is 0,"),
    ("cells:darts:32:c16_l8_k0:normal=|sep_conv_3x3~0|", "cell network classes is 0,"),
    ("cells:darts:32:c16_l8_k10:normal=|sep_conv_3x3~²|", "is not OP~INPUT"),
])
def test_cell_arch_strings_are_one_line(text, named):
    raises_one_line(Arch.parse, text, match=named)


def test_lut_predict_refuses_a_cell_network_of_a_hundred_million_cells(tmp_path):
    refused(["lut", "predict", "cells:darts:32:c16_l100000000_k10:normal=|sep_conv_3x3~0|", "--lut-dir", tmp_path],
            "layers is 100000000")


# -- arch.json: garbage, a list, binary -------------------------------------------------------------------------
ARCH_FILES = {"garbage": b"{not json", "list": b'["32:relu:fc_c10"]', "binary": b"\xff\xfe\x00\x89PNG\x00",
              "wrong-types": b'{"layers": "cn_k3_c16", "resolution": "big"}', "arch-number": b'{"arch": 224}',
              "deep": b"[" * 100000}


@pytest.mark.parametrize("kind", list(ARCH_FILES))
def test_arch_load_is_one_line_naming_the_file(tmp_path, kind):
    path = tmp_path / "arch.json"
    path.write_bytes(ARCH_FILES[kind])
    raises_one_line(Arch.load, path, match=str(path))


@pytest.mark.parametrize("kind", ["garbage", "list", "binary"])
def test_export_refuses_a_broken_arch_json_file(tmp_path, kind):
    path = tmp_path / f"{kind}.json"
    path.write_bytes(ARCH_FILES[kind])
    refused(["export", "--arch", path, "--out", tmp_path / "x"], str(path))


@pytest.mark.parametrize("kind", ["garbage", "list", "binary"])
def test_export_refuses_a_run_with_a_broken_arch_json(tmp_path, kind):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "arch.json").write_bytes(ARCH_FILES[kind])
    refused(["export", tmp_path / "run", "--out", tmp_path / "x"], "arch.json")


@pytest.mark.parametrize("kind", ["garbage", "list", "binary"])
def test_lut_predict_refuses_a_broken_arch_json(tmp_path, kind):
    path = tmp_path / "arch.json"
    path.write_bytes(ARCH_FILES[kind])
    refused(["lut", "predict", path, "--lut-dir", tmp_path], str(path))
    refused(["lut", "predict", tmp_path, "--lut-dir", tmp_path], str(path))  # the run folder holding it


@pytest.mark.parametrize("kind", ["garbage", "list", "binary"])
def test_train_refuses_a_broken_arch_json(tmp_path, kind):
    run = tmp_path / "run"
    run.mkdir()
    save_config(SearchConfig(), run / "config.yaml")
    (run / "arch.json").write_bytes(ARCH_FILES[kind])
    refused(["train", run, "--no-measure"], "arch.json")


def test_arch_json_round_trips_and_old_layer_form_still_loads(tmp_path):
    arch = Arch.parse(SMALL)
    arch.save(tmp_path / "a.json", device="cpu")
    assert Arch.load(tmp_path / "a.json") == arch
    (tmp_path / "b.json").write_text(json.dumps({"layers": arch.to_json()["layers"], "resolution": 32, "act": "relu"}))
    assert Arch.load(tmp_path / "b.json") == arch


# -- devices files ----------------------------------------------------------------------------------------------
def devices_file(tmp_path, body):
    path = tmp_path / "devices.yaml"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return path


def test_devices_file_that_is_not_utf8_is_one_line(tmp_path):
    path = devices_file(tmp_path, b"devices:\n  x:\n    description: caf\xe9\n")
    refused(["devices", "--devices", path], str(path), "UTF-8")


def test_devices_threads_past_the_bound_is_one_line(tmp_path):
    path = devices_file(tmp_path, "devices:\n  x:\n    runtime: onnxruntime\n    threads: 99999999999999999999\n")
    refused(["devices", "--devices", path], "'threads'", "99999999999999999999")


@pytest.mark.parametrize("body, named", [
    ("devices:\n  x:\n    runtime: onnxruntime\n    batch: 0\n", "'batch' must be >= 1"),
    ("devices:\n  x:\n    runtime: onnxruntime\n    threads: " + "9" * 5000 + "\n", "is not a usable devices file"),
    ("devices:\n  x:\n    runtime: onnxruntime\n    threads: 0x" + "f" * 5000 + "\n", "a 20000-bit number"),
    ("devices: " + "[" * 5000, "is not valid YAML"),
    ("devices:\n  x:\n    runtime: onnxruntime\n    1: 2\n    z: 3\n", "unknown key 1 "),
    ("devices:\n  \"a\\nb\":\n    runtime: onnxruntime\n", "must be non-empty, on one line"),
    ("devices: {x: \x00}\n", "is not valid YAML"),
])
def test_odd_devices_files_are_one_line(tmp_path, body, named):
    raises_one_line(load_devices, devices_file(tmp_path, body), match=named)


def test_onnxruntime_option_values_are_checked_and_check_never_says_ready(tmp_path):
    path = devices_file(tmp_path, "devices:\n  x:\n    runtime: onnxruntime\n    options: {optimization: bogus}\n")
    raises_one_line(load_devices, path, match="option 'optimization' is 'bogus', expected all, extended or basic")
    line = refused(["devices", "--devices", path, "--check"], "'bogus'")
    assert "ready" not in line
    good = devices_file(tmp_path, "devices:\n  x:\n    runtime: onnxruntime\n    options: {optimization: basic}\n")
    assert load_devices(good)["x"].options == {"optimization": "basic"}
