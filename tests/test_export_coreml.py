"""Core ML export: ML program packages validated here (spec, interface, every op and weight read back); the
numeric check runs the Core ML runtime, which exists only on macOS."""

import platform
import shutil

import pytest
import torch
from torch import nn

from hwnas.errors import ConfigError, HwnasError
from hwnas.export import CheckSkipped, get_exporter
from hwnas.export.fold import fold_batchnorm
from hwnas.export.source import ExportSource, build_model
from hwnas.spaces.published import get_published

pytestmark = pytest.mark.slow  # converts whole networks with the real Core ML converter

pytest.importorskip("coremltools", reason="Core ML export needs coremltools (pip install 'hwnas[coreml]')")
torch.set_num_threads(1)
ON_MAC = platform.system() == "Darwin"


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """FBNet-A (grouped convs, channel shuffle) in fp16 and HardCoRe-NAS A (SE, h-swish) in fp32, at 64 px."""
    exporter, folder, made = get_exporter("coreml"), tmp_path_factory.mktemp("coreml"), {}
    for name, precision in (("fbnet_a", "fp16"), ("hardcorenas_a", "fp32")):
        arch = get_published(name, 64, 10)
        model, _ = build_model(ExportSource(arch, name, "published"), seed=0)
        example = torch.randn(2, 3, 64, 64)
        path = exporter.export(fold_batchnorm(model), example, folder / f"{name}.{precision}", precision=precision)
        made[name] = (arch, model, example, path)
    return made


@pytest.mark.parametrize("name", ["fbnet_a", "hardcorenas_a"])
def test_package_validates_with_the_network_inside(packages, name):
    arch, model, example, path = packages[name]
    assert path.suffix == ".mlpackage" and (path / "Manifest.json").exists()
    facts = get_exporter("coreml").validate(path, model, example)
    assert facts["specification_version"] == 7  # iOS16, the default deployment target
    assert facts["interface"]["input"]["shape"] == [1, 3, 64, 64]
    assert facts["interface"]["output"]["shape"] == [1, 10]
    built = arch.build()
    assert facts["operations"]["conv"] == sum(isinstance(m, nn.Conv2d) for m in built.modules())
    assert facts["operations"]["linear"] == sum(isinstance(m, nn.Linear) for m in built.modules())
    assert "batch_norm" not in facts["operations"]
    assert facts["weights_bytes"] > 0


def test_fp16_package_stores_half_the_weights(packages):
    _, model, example, path = packages["fbnet_a"]
    facts = get_exporter("coreml").validate(path, model, example)
    parameters = sum(p.numel() for p in fold_batchnorm(model).parameters())
    assert facts["weights_bytes"] < 2.5 * parameters  # 2 bytes a weight (+ alignment), not 4


def test_a_damaged_package_is_refused(packages, tmp_path):
    _, model, example, path = packages["hardcorenas_a"]
    broken = tmp_path / "broken.mlpackage"
    shutil.copytree(path, broken)
    for weights in (broken / "Data" / "com.apple.CoreML" / "weights").glob("*"):
        weights.write_bytes(b"")
    with pytest.raises(HwnasError, match="does not read back"):
        get_exporter("coreml").validate(broken, model, example)
    with pytest.raises(HwnasError, match="does not read back|the network's is"):
        get_exporter("coreml").validate(path, model, torch.randn(1, 3, 32, 32))


def test_deployment_target_must_allow_ml_programs():
    exporter = get_exporter("coreml")
    with pytest.raises(ConfigError, match="'iOS14' is not one an ML program supports"):
        exporter.deployment_target("iOS14")
    assert exporter.deployment_target("iOS17") > exporter.deployment_target("iOS16")


@pytest.mark.skipif(ON_MAC, reason="on macOS the numeric check runs (test_numeric_check_on_macos)")
def test_numeric_check_is_skipped_off_macos_with_the_reason(packages):
    _, model, example, path = packages["fbnet_a"]
    with pytest.raises(CheckSkipped, match="only on macOS"):
        get_exporter("coreml").check(path, model, example)


@pytest.mark.skipif(not ON_MAC, reason="the Core ML runtime exists only on macOS; packages are validated here")
def test_numeric_check_on_macos(packages):
    for name, tolerance in (("fbnet_a", 1e-2), ("hardcorenas_a", 1e-4)):
        _, model, example, path = packages[name]
        with torch.no_grad():
            scale = model(example).abs().max().item()
        assert get_exporter("coreml").check(path, model, example) <= tolerance * scale
