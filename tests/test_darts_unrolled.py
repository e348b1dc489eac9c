"""DARTS' second-order architecture gradient (Liu et al. 2019, Eqs. 7-8) against finite differences of the
unrolled objective f(α) = L_val(w − ξ(∇_w L_train(w, α) + λw + μ·m), α), in float64 on a tiny cell supernet.

Finite differences of a gradient need a smooth function: with ReLU, ∇_α L_train jumps wherever a pre-activation
crosses zero, so (∇_α L(w + εv) − ∇_α L(w − εv)) / 2ε grows like 1/ε on a network this small. The supernet's
ReLUs are swapped for Softplus here; everything else (cells, mixed edges, BatchNorm, pooling) is the real one.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.cells import get_cell_space
from hwnas.cells.supernet import CellSupernet
from hwnas.cells.unrolled import unrolled_arch_grads

torch.set_num_threads(1)
LR, MOMENTUM, DECAY = 0.1, 0.9, 3e-4


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    space = get_cell_space("nb201", 8, 3).with_network(2, 3)
    net = _smooth(CellSupernet(space).double())
    alpha = (0.5 * torch.randn(len(space.edges), len(space.primitives), dtype=torch.float64)).requires_grad_()
    train = (torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2]))
    val = (torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.tensor([2, 1, 0, 2, 1, 0]))
    weights = [p for p in net.parameters()]
    buffers = [0.1 * torch.randn_like(w) for w in weights]

    def loss_fn(x, y):
        return F.cross_entropy(net(x, {"cell": F.softmax(alpha, -1)}), y)

    return net, alpha, train, val, weights, buffers, loss_fn


def _smooth(module: nn.Module) -> nn.Module:
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.Softplus())
    return module


def unrolled_objective(problem) -> float:
    net, alpha, train, val, weights, buffers, loss_fn = problem
    saved = [w.detach().clone() for w in weights]
    grads = torch.autograd.grad(loss_fn(*train), weights)
    with torch.no_grad():
        for w, g, b in zip(weights, grads, buffers):
            w.sub_(LR * (g + DECAY * w + MOMENTUM * b))
        value = float(loss_fn(*val))
        for w, s in zip(weights, saved):
            w.copy_(s)
    return value


def test_second_order_gradient_matches_finite_differences(problem):
    net, alpha, train, val, weights, buffers, loss_fn = problem
    before = [w.detach().clone() for w in weights]
    result = unrolled_arch_grads(loss_fn, weights, [alpha], train, val, LR, momentum=MOMENTUM, weight_decay=DECAY,
                                 momentum_buffers=buffers, r=1e-4)
    assert all(torch.equal(w, b) for w, b in zip(weights, before))  # the weights are restored

    h = 1e-5
    numeric = torch.zeros_like(alpha)
    for index in range(alpha.numel()):
        with torch.no_grad():
            alpha.view(-1)[index] += h
        plus = unrolled_objective(problem)
        with torch.no_grad():
            alpha.view(-1)[index] -= 2 * h
        minus = unrolled_objective(problem)
        with torch.no_grad():
            alpha.view(-1)[index] += h
        numeric.view(-1)[index] = (plus - minus) / (2 * h)

    total = result.total[0]
    assert torch.allclose(total, numeric, rtol=1e-3, atol=1e-6), (total - numeric).abs().max()
    # The second-order term matters here: the first-order (direct) term alone is measurably off.
    assert not torch.allclose(result.direct[0], numeric, rtol=1e-3, atol=1e-6)


def test_zero_learning_rate_is_first_order(problem):
    net, alpha, train, val, weights, buffers, loss_fn = problem
    result = unrolled_arch_grads(loss_fn, weights, [alpha], train, val, 0.0)
    (direct,) = torch.autograd.grad(loss_fn(*val), [alpha])
    assert torch.allclose(result.total[0], direct, rtol=1e-10, atol=1e-12)


def test_second_order_gradient_matches_the_exact_hypergradient(problem):
    from torch.func import functional_call

    net, alpha, train, val, weights, buffers, loss_fn = problem
    names = [name for name, _ in net.named_parameters()]

    def loss_at(params, x, y):
        return F.cross_entropy(functional_call(net, dict(zip(names, params)), (x, {"cell": F.softmax(alpha, -1)})), y)

    grads = torch.autograd.grad(loss_at(weights, *train), weights, create_graph=True)
    unrolled = [w - LR * (g + DECAY * w + MOMENTUM * b) for w, g, b in zip(weights, grads, buffers)]
    (exact,) = torch.autograd.grad(loss_at(unrolled, *val), [alpha])
    result = unrolled_arch_grads(loss_fn, weights, [alpha], train, val, LR, momentum=MOMENTUM, weight_decay=DECAY,
                                 momentum_buffers=buffers, r=1e-4)
    assert torch.allclose(result.total[0], exact, rtol=1e-4, atol=1e-7)
