"""BatchNorm folding: conv + BN -> one conv, exact up to float rounding, on every block the published nets use."""

import pytest
import torch
from torch import nn

from hwnas.export.fold import fold_batchnorm, fold_conv_bn
from hwnas.spaces.published import PUBLISHED, get_published

torch.set_num_threads(1)


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial statistics and affine parameters, so folding has something to get wrong."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.2)
    return model.eval()


@pytest.mark.parametrize("groups,bias", [(1, False), (8, False), (2, True), (16, False)])
def test_conv_bn_pair_folds_exactly(groups, bias):
    conv = nn.Conv2d(16, 16, 3, padding=1, groups=groups, bias=bias)
    pair = randomise_batchnorm(nn.Sequential(conv, nn.BatchNorm2d(16))).double()
    x = torch.randn(2, 16, 9, 9, dtype=torch.double)
    fused = fold_conv_bn(pair[0], pair[1])
    with torch.no_grad():
        assert torch.allclose(fused(x), pair(x), rtol=0, atol=1e-12)
    assert fused.bias is not None and fused.weight.shape == conv.weight.shape


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_networks_fold_to_the_same_function(name):
    torch.manual_seed(0)
    model = randomise_batchnorm(get_published(name, 32, 10).build()).double()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 32, 32, dtype=torch.double)
    with torch.no_grad():
        reference, output = model(x), folded(x)
    assert (output - reference).abs().max() <= 1e-10 * reference.abs().max()
    # Each BN's 2C parameters become the C biases of the conv before it.
    removed = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert sum(p.numel() for p in folded.parameters()) == sum(p.numel() for p in model.parameters()) - removed


def test_folding_copies_and_leaves_the_model_alone():
    model = randomise_batchnorm(get_published("mobilenetv2", 32, 10).build())
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert model.training and not folded.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_a_batchnorm_not_after_a_conv_stays():
    model = nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    folded = fold_batchnorm(model)
    assert isinstance(folded[0], nn.BatchNorm2d) and isinstance(folded[3], nn.BatchNorm2d)
