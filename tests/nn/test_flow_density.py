"""Flow densities: normalisation, fitting, MAF/IAF sampling vs density, actnorm init, dequantization."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from dgmdsl.nn.flows import ActNorm, FlowDensity, LayerSpec, RepeatSpec, build_flow, dequantize


def tiny_net(net_option, in_features: int, out_features: int) -> nn.Module:
    net = nn.Sequential(nn.Linear(in_features, 32), nn.Tanh(), nn.Linear(32, out_features))
    with torch.no_grad():  # small but non-zero: a non-trivial map that keeps its mass on the grid
        net[-1].weight.mul_(0.5)
    return net


MADE = {"hidden": [16, 16]}
STACKS = {
    "realnvp": [RepeatSpec(4, [LayerSpec("affine_coupling", {"mask": "alternate"}), LayerSpec("permute")]), LayerSpec("actnorm")],
    "nice": [RepeatSpec(4, [LayerSpec("additive_coupling", {"mask": "alternate"})]), LayerSpec("scale")],
    "spline": [RepeatSpec(3, [LayerSpec("spline_coupling", {"bins": 6, "bound": 4.0})]), LayerSpec("lu_linear")],
    "maf": [RepeatSpec(3, [LayerSpec("maf", {"net": MADE}), LayerSpec("permute", {"order": "random", "seed": 0})])],
    "iaf": [RepeatSpec(3, [LayerSpec("iaf", {"net": MADE}), LayerSpec("permute", {"order": "random", "seed": 0})])],
}


def density(name: str, dim: int = 2) -> FlowDensity:
    torch.manual_seed(0)
    model = FlowDensity(build_flow(STACKS[name], dim, make_net=tiny_net))
    with torch.no_grad():  # non-trivial volume change in the diagonal layers too
        for parameter_name, parameter in model.named_parameters():
            if "log_scale" in parameter_name:
                parameter.copy_(torch.tensor([0.3, -0.2]))
    return model


def grid_integral(model: FlowDensity, half_width: float = 8.0, steps: int = 321) -> tuple[float, torch.Tensor]:
    axis = torch.linspace(-half_width, half_width, steps)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        log_p = model.log_prob(grid)
    cell = (axis[1] - axis[0]) ** 2
    return float(log_p.exp().sum() * cell), log_p


@pytest.mark.parametrize("name", sorted(STACKS))
def test_untrained_density_integrates_to_one(name):
    model = density(name).eval()
    total, log_p = grid_integral(model)
    axis = torch.linspace(-8.0, 8.0, 321)
    base = model.base_log_prob(torch.cartesian_prod(axis, axis))
    assert (log_p - base).abs().max() > 0.1, "the flow must not be the identity"
    assert abs(total - 1.0) < 1e-2


def mixture_sample(n: int, generator: torch.Generator) -> torch.Tensor:
    centres = torch.tensor([[-2.0, -1.0], [2.0, 1.0]])
    component = torch.randint(0, 2, (n,), generator=generator)
    return centres[component] + 0.5 * torch.randn(n, 2, generator=generator)


def mixture_log_prob(x: torch.Tensor) -> torch.Tensor:
    centres = torch.tensor([[-2.0, -1.0], [2.0, 1.0]])
    normal = torch.distributions.Normal(centres, 0.5)
    per_component = normal.log_prob(x[:, None, :]).sum(-1)
    return torch.logsumexp(per_component, dim=-1) - math.log(2.0)


def test_fitting_a_two_component_mixture_lowers_nll():
    generator = torch.Generator().manual_seed(0)
    held_out = mixture_sample(2000, generator)
    model = density("realnvp")
    model.flow.initialize(mixture_sample(512, generator))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    initial_nll = -model.log_prob(held_out).mean().item()
    for _ in range(300):
        loss = -model.log_prob(mixture_sample(256, generator)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    final_nll = -model.log_prob(held_out).mean().item()
    entropy = -mixture_log_prob(held_out).mean().item()  # the best achievable NLL, up to MC error
    assert final_nll < initial_nll - 0.5
    assert final_nll < entropy + 0.3
    assert abs(grid_integral(model)[0] - 1.0) < 1e-2


@pytest.mark.parametrize("name", ["maf", "iaf"])
def test_sample_log_prob_matches_density_evaluation(name):
    model = density(name, dim=4).double()
    x, log_p = model.sample_with_log_prob(200, generator=torch.Generator().manual_seed(3))
    assert x.shape == (200, 4) and x.dtype == torch.float64
    torch.testing.assert_close(model.log_prob(x), log_p, atol=1e-6, rtol=0)


def test_speed_hints():
    maf, iaf = density("maf").flow, density("iaf").flow
    assert maf.fast_density and not maf.fast_sampling
    assert iaf.fast_sampling and not iaf.fast_density
    assert density("realnvp").flow.fast_density and density("realnvp").flow.fast_sampling


def actnorm_stack():
    torch.manual_seed(0)
    spec = [LayerSpec("actnorm"), LayerSpec("affine_coupling"), LayerSpec("actnorm")]
    return build_flow(spec, 3, make_net=tiny_net)


def test_initialize_standardises_each_actnorm_output():
    x = torch.randn(500, 3) * torch.tensor([5.0, 0.2, 1.0]) + torch.tensor([3.0, -1.0, 0.0])
    flow = actnorm_stack()
    flow.initialize(x)
    z = flow.inverse(x)[0].detach()
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(3), atol=1e-5, rtol=0)
    assert all(bool(layer.initialized) for layer in flow.layers if isinstance(layer, ActNorm))


def test_actnorm_initialises_lazily_once_and_the_flag_survives_state_dict():
    first, second = torch.randn(100, 3) * 4.0 + 2.0, torch.randn(100, 3)
    flow = actnorm_stack().eval()
    flow.inverse(first)
    assert not bool(flow.layers[2].initialized), "no initialisation outside training"
    flow.train()
    flow.inverse(first)
    state = copy.deepcopy(flow.state_dict())
    flow.inverse(second)  # already initialised: parameters stay put
    torch.testing.assert_close(flow.state_dict(), state)
    restored = actnorm_stack().train()
    restored.load_state_dict(state)
    restored.inverse(second)
    torch.testing.assert_close(restored.state_dict(), state)
    torch.testing.assert_close(restored.inverse(first)[0], flow.inverse(first)[0])


def test_reused_input_after_parameter_update_and_deepcopy():
    model = density("realnvp")
    x = torch.randn(64, 2)
    before = model.log_prob(x)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    (-before.mean()).backward()
    optimizer.step()
    after = model.log_prob(x)  # the same tensor object: must not hit a stale cache
    assert (after - before).abs().max() > 1e-4
    torch.testing.assert_close(after, model.log_prob(x.clone()))
    torch.testing.assert_close(copy.deepcopy(model).log_prob(x), after)


def test_dequantize_stays_in_cell_and_corrects_by_d_log_levels():
    x = torch.randint(0, 16, (50, 3, 2), generator=torch.Generator().manual_seed(0))
    x_cont, correction = dequantize(x, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.floor(x_cont * 16).long(), x)
    torch.testing.assert_close(correction, torch.full((50,), -6 * math.log(16)))


def test_dequantized_log_density_lower_bounds_discrete_log_likelihood():
    # Continuous Beta(2, 2) on [0, 1], CDF 3v^2 - 2v^3; P(k) is its mass on cell k.
    levels, n = 4, 20000
    cdf = lambda v: 3 * v**2 - 2 * v**3
    for k in range(levels):
        exact = math.log(cdf((k + 1) / levels) - cdf(k / levels))
        x = torch.full((n, 1), k, dtype=torch.long)
        x_cont, correction = dequantize(x, levels, generator=torch.Generator().manual_seed(k))
        v = x_cont[:, 0].double()
        bound = torch.log(6 * v * (1 - v)) + correction.double()
        estimate, stderr = bound.mean().item(), bound.std().item() / math.sqrt(n)
        assert exact - 0.5 < estimate < exact + 3 * stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    for name in STACKS:
        model = density(name).cuda()
        x = model.sample(16)
        assert x.is_cuda and model.log_prob(x).is_cuda
