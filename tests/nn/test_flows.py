"""Invertible layers: round trips, exact log-dets, the alternate-mask rule, seeds."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from dgmdsl.nn.flows import LAYER_BUILDERS, FlowStack, LayerSpec, MaskedCoupling, Permutation, RepeatSpec, build_flow
from dgmdsl.nn.flows.linear import random_order


DIM = 4


def tiny_net(net_option, in_features: int, out_features: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_features, 16), nn.Tanh(), nn.Linear(16, out_features))


MADE = {"hidden": [16, 16]}

# One example per registered layer; the coverage test keeps this in step with the registry.
EXAMPLE_OPTIONS = {
    "additive_coupling": {"mask": "alternate", "net": None},
    "affine_coupling": {"mask": "alternate", "net": None},
    "spline_coupling": {"net": None, "bins": 5, "bound": 3.0},
    "maf": {"net": MADE},
    "iaf": {"net": MADE},
    "actnorm": {},
    "batchnorm": {"momentum": 0.5},
    "scale": {},
    "permute": {"order": "random", "seed": 3},
    "lu_linear": {},
    "logit": {"alpha": 0.1},
    "sigmoid": {},
}


def test_examples_cover_every_registered_layer():
    assert set(EXAMPLE_OPTIONS) == set(LAYER_BUILDERS)


def nontrivial_layer(name: str) -> FlowStack:
    """The layer alone in a float64 stack, with data-set statistics and perturbed parameters, in eval mode."""
    torch.manual_seed(0)
    flow = build_flow([LayerSpec(name, EXAMPLE_OPTIONS[name])], DIM, make_net=tiny_net).double()
    # Training-mode inverse passes set actnorm's init and move batchnorm's averages off (0, 1).
    for _ in range(3):
        flow.inverse(flow(3.0 * torch.randn(64, DIM, dtype=torch.float64) + 1.0)[0])
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return flow.eval()


def points() -> torch.Tensor:
    return torch.randn(5, DIM, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def log_abs_det(fn, v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.slogdet(jacobian(lambda u: fn(u[None])[0][0], v)).logabsdet


@pytest.mark.parametrize("name", sorted(EXAMPLE_OPTIONS))
def test_round_trip_and_opposite_log_dets(name):
    flow, z = nontrivial_layer(name), points()
    x, log_det_fwd = flow(z)
    z_back, log_det_inv = flow.inverse(x)
    assert (x - z).abs().max() > 1e-2, "layer under test must not be the identity"
    torch.testing.assert_close(z_back, z, atol=1e-5, rtol=0)
    torch.testing.assert_close(log_det_inv, -log_det_fwd, atol=1e-8, rtol=0)
    assert log_det_fwd.shape == (z.shape[0],)


@pytest.mark.parametrize("name", sorted(EXAMPLE_OPTIONS))
def test_log_dets_equal_autograd_jacobians(name):
    flow, z = nontrivial_layer(name), points()
    x, log_det_fwd = flow(z)
    _, log_det_inv = flow.inverse(x)
    expected_fwd = torch.stack([log_abs_det(flow, v) for v in z])
    expected_inv = torch.stack([log_abs_det(flow.inverse, v) for v in x.detach()])
    torch.testing.assert_close(log_det_fwd, expected_fwd, atol=1e-6, rtol=0)
    torch.testing.assert_close(log_det_inv, expected_inv, atol=1e-6, rtol=0)


def test_nice_couplings_have_log_det_exactly_zero():
    torch.manual_seed(0)
    flow = build_flow([RepeatSpec(4, [LayerSpec("additive_coupling", {"mask": "alternate"})])], 6, tiny_net)
    z = torch.randn(32, 6)
    x, log_det_fwd = flow(z)
    _, log_det_inv = flow.inverse(x)
    assert (x - z).abs().max() > 1e-2
    assert torch.equal(log_det_fwd, torch.zeros(32)) and torch.equal(log_det_inv, torch.zeros(32))


def transformed_coordinates(flow: FlowStack, dim: int) -> list[set[int]]:
    """Per coupling, the original coordinates (labels followed through permutations) whose values it changes."""
    labels = torch.arange(dim, dtype=torch.float32)
    h = torch.randn(1, dim)
    found = []
    for layer in flow.layers:
        if isinstance(layer, Permutation):
            labels = layer(labels[None])[0][0]
        elif isinstance(layer, MaskedCoupling):
            changed = ((layer(h)[0] - h).abs() > 1e-6)[0]
            found.append({int(labels[p]) for p in torch.nonzero(changed).flatten()})
        h = layer(h)[0].detach()
    return found


PERMUTES = {
    "none": [],
    "reverse": [LayerSpec("permute", {"order": "reverse"})],
    "random": [LayerSpec("permute", {"order": "random", "seed": 7})],
    "two_random": [LayerSpec("permute", {"order": "random", "seed": 1}), LayerSpec("permute", {"order": "random"})],
}


@pytest.mark.parametrize("between", sorted(PERMUTES))
@pytest.mark.parametrize("dim", [5, 6])
def test_consecutive_couplings_transform_complementary_coordinates(between, dim):
    torch.manual_seed(0)
    body = [LayerSpec("affine_coupling", {"mask": "alternate"}), *PERMUTES[between]]
    couplings = [LayerSpec("additive_coupling"), *PERMUTES[between], RepeatSpec(3, body)]
    couplings.append(LayerSpec("spline_coupling", {"bound": 10.0}))
    flow = build_flow(couplings, dim, tiny_net)
    found = transformed_coordinates(flow, dim)
    assert len(found) == 5
    assert found[0] == set(range(1, dim, 2)), "the first coupling transforms the odd positions"
    for previous, current in zip(found, found[1:]):
        assert previous.isdisjoint(current) and previous | current == set(range(dim))


def test_random_permutation_seed_advances_per_repetition():
    spec = [RepeatSpec(3, [LayerSpec("permute", {"order": "random", "seed": 5})])]
    torch.manual_seed(0)
    first = [layer.permutation.tolist() for layer in build_flow(spec, 8).layers]
    torch.manual_seed(1)  # the global RNG must not matter
    again = [layer.permutation.tolist() for layer in build_flow(spec, 8).layers]
    single = build_flow([LayerSpec("permute", {"order": "random", "seed": 6})], 8).layers[0]
    assert first == again
    assert len({tuple(p) for p in first}) == 3
    assert first[1] == single.permutation.tolist()
    assert all(sorted(p) == list(range(8)) for p in first)


def test_nested_repeats_count_repetitions_of_the_unrolled_layer():
    spec = [RepeatSpec(2, [RepeatSpec(3, [LayerSpec("permute", {"order": "random", "seed": 10})])])]
    perms = [layer.permutation.tolist() for layer in build_flow(spec, 6).layers]
    assert perms == [random_order(6, 10 + i) for i in range(6)]


@pytest.mark.parametrize(
    "spec",
    [
        LayerSpec("glow_step"),
        LayerSpec("actnorm", {"scale": 2}),
        LayerSpec("affine_coupling", {"mask": "checkerboard"}),
        LayerSpec("permute", {"order": "sorted"}),
        LayerSpec("logit", {"alpha": 0.5}),
    ],
)
def test_bad_specs_are_rejected(spec):
    with pytest.raises(ValueError):
        build_flow([spec], 4)


def test_batchnorm_training_inverse_uses_batch_statistics():
    flow = build_flow([LayerSpec("batchnorm")], 3).train()
    x = torch.randn(400, 3) * torch.tensor([3.0, 0.5, 1.0]) + 2.0
    z, log_det = flow.inverse(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(3), atol=1e-3, rtol=0)
    expected = -0.5 * torch.log(x.var(0) + 1e-5).sum()
    torch.testing.assert_close(log_det, expected.expand(400))


def test_default_nets_follow_the_hidden_option():
    spec = [LayerSpec("affine_coupling", {"net": {"hidden": [7, 5]}}), LayerSpec("maf", {"net": {"hidden": [9]}})]
    flow = build_flow(spec, 4)
    widths = [[m.out_features for m in layer.modules() if isinstance(m, nn.Linear)] for layer in flow.layers]
    assert widths == [[7, 5, 4], [9, 8]]  # coupling: shift and log-scale of 2 coordinates; MADE: 2 per input
    z = torch.randn(3, 4)
    torch.testing.assert_close(flow.inverse(flow(z)[0])[0], z, atol=1e-5, rtol=0)


def test_permutation_equals_pyros_permute_both_ways():
    from dgmdsl.nn.flows.linear import Permutation, random_order
    layer = Permutation(random_order(7, seed=3))
    z = torch.randn(5, 7)
    x, log_det = layer(z)
    assert torch.equal(x, layer.to_pyro()(z)) and torch.equal(log_det, torch.zeros(5))
    back, inverse_log_det = layer.inverse(x)
    assert torch.equal(back, z) and torch.equal(back, layer.to_pyro().inv(x))
    assert torch.equal(inverse_log_det, torch.zeros(5))


@pytest.mark.parametrize("kind", ["coupling", "autoregressive"])
def test_direct_affine_path_equals_pyros_transform_call(kind):
    from pyro.distributions.transforms import AffineAutoregressive, AffineCoupling
    from pyro.nn import AutoRegressiveNN, DenseNN

    from dgmdsl.nn.flows.base import PyroBijection, apply_pyro
    torch.manual_seed(0)
    if kind == "coupling":
        transform = AffineCoupling(2, DenseNN(2, [8], [3, 3]))
        dim = 5
    else:
        transform = AffineAutoregressive(AutoRegressiveNN(4, [8]))
        dim = 4
    for reverse in (False, True):
        layer = PyroBijection(transform, reverse=reverse)
        assert layer.affine
        z = torch.randn(6, dim)
        for direct, generic in ((layer(z), apply_pyro(transform, z, inverse=reverse)),
                                (layer.inverse(z), apply_pyro(transform, z, inverse=not reverse))):
            assert torch.allclose(direct[0], generic[0], atol=1e-6)
            assert torch.allclose(direct[1], generic[1], atol=1e-6)


def test_affine_split_coupling_equals_pyros_affine_coupling():
    """The plain-torch RealNVP layer against Pyro's AffineCoupling on the same net:
    values, log-dets and gradients, the log-scale clip included (a scaled-up net
    drives some log-scales past [-5, 3])."""
    from pyro.distributions.transforms import AffineCoupling

    from dgmdsl.nn.flows.base import apply_pyro
    from dgmdsl.nn.flows.coupling import AffineSplitCoupling, SplitHead
    from dgmdsl.nn.mlp import MLP
    torch.manual_seed(0)
    net = MLP(2, 6, hidden=[16])
    with torch.no_grad():
        net[-1].weight.mul_(20.0)
    ours = AffineSplitCoupling(net, n_kept=2, n_moved=3)
    pyros = AffineCoupling(2, SplitHead(net, [3, 3]))
    z = torch.randn(64, 5)
    raw_log_scale = net(z[:, :2])[:, 3:]
    assert (raw_log_scale > 3).any() and (raw_log_scale < -5).any()  # the clip binds
    for inverse in (False, True):
        net.zero_grad()
        out, log_det = ours.inverse(z) if inverse else ours(z)
        (out.sum() + log_det.sum()).backward()
        ours_grads = [p.grad.clone() for p in net.parameters()]
        net.zero_grad()
        ref_out, ref_log_det = apply_pyro(pyros, z, inverse=inverse)
        (ref_out.sum() + ref_log_det.sum()).backward()
        assert torch.allclose(out, ref_out, atol=1e-5) and torch.allclose(log_det, ref_log_det, atol=1e-5)
        for mine, theirs in zip(ours_grads, (p.grad for p in net.parameters())):
            assert torch.allclose(mine, theirs, rtol=1e-5, atol=1e-5)
    x, forward_log_det = ours(z)
    back, inverse_log_det = ours.inverse(x)
    assert torch.allclose(back, z, atol=1e-4) and torch.allclose(forward_log_det, -inverse_log_det)


def test_permutation_reversal_is_a_flip_and_volume_preserving_layers_are_skipped():
    from dgmdsl.nn.flows.coupling import AdditiveSplitCoupling, MaskedCoupling
    from dgmdsl.nn.flows.linear import Permutation
    from dgmdsl.nn.flows.stack import FlowStack
    from dgmdsl.nn.mlp import MLP
    z = torch.randn(7, 3, requires_grad=True)
    reverse, cycle = Permutation([2, 1, 0]), Permutation([1, 2, 0])
    assert reverse.reversal and not cycle.reversal
    for layer in (reverse, cycle):
        x, log_det = layer(z)
        assert torch.equal(x, z[..., layer.permutation]) and torch.equal(log_det, torch.zeros(7))
        assert torch.equal(layer.inverse(x)[0], z)
    (reverse(z)[0] * torch.arange(3.0)).sum().backward()
    assert torch.equal(z.grad, torch.arange(3.0).flip(0).expand(7, 3))
    additive = MaskedCoupling(AdditiveSplitCoupling(MLP(2, 1, hidden=[4]), 2), [0, 2], [1])
    assert additive.volume_preserving and reverse.volume_preserving
    stack = FlowStack([reverse, additive, cycle], dim=3)
    x, log_det = stack(z.detach())
    back, inverse_log_det = stack.inverse(x)
    assert torch.allclose(back, z.detach(), atol=1e-6)
    assert torch.equal(log_det, torch.zeros(7)) and torch.equal(inverse_log_det, torch.zeros(7))


def test_affine_split_coupling_loads_weights_saved_from_the_pyro_wrapped_layer():
    from pyro.distributions.transforms import AffineCoupling

    from dgmdsl.nn.flows.base import PyroBijection
    from dgmdsl.nn.flows.coupling import AffineSplitCoupling, MaskedCoupling, SplitHead
    from dgmdsl.nn.mlp import MLP
    torch.manual_seed(0)
    old = MaskedCoupling(PyroBijection(AffineCoupling(1, SplitHead(MLP(1, 2, hidden=[8]), [1, 1]))), [0], [1])
    new = MaskedCoupling(AffineSplitCoupling(MLP(1, 2, hidden=[8]), 1, 1), [0], [1])
    assert any(k.startswith("inner.transform.nn.net.") for k in old.state_dict())
    new.load_state_dict(old.state_dict())
    z = torch.randn(9, 2)
    for mine, theirs in zip(new(z), old(z)):
        assert torch.allclose(mine, theirs, atol=1e-6)
