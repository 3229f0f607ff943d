"""The energy family through its backend: options, quadrature and AIS log Z of a Gaussian
energy against the closed form, the spec's samplers on a Gaussian, denoising score matching,
the fce noise flow, and `dgm eval` on a fitted run.

Engines are checked on a quadratic energy E(x) = 1/2 (x - m)^T L L^T (x - m): an MLP cannot
represent it, and only an exact quadratic has a closed-form optimum (the data's mean and
precision) to compare with. It replaces the built net (`Quadratic`, patched into the
backend's `build_net`), so everything else — spec, data loading, engines, loop, evaluation —
is the code that runs for a real spec.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import dgmdsl
from dgmdsl.families import energy as energy_module
from dgmdsl.runtime.api import compile_model
from dgmdsl.runtime.errors import RuntimeUserError

MEAN = torch.tensor([0.5, -0.3])
COV = torch.tensor([[1.0, 0.3], [0.3, 0.5]])


class Quadratic(nn.Module):
    """E(x) = 1/2 (x - m)^T L L^T (x - m), returned as [B, 1] like a net; starts at N(0, I)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(dim))
        self.factor = nn.Parameter(torch.eye(dim))

    @property
    def precision(self) -> torch.Tensor:
        lower = self.factor.tril()
        return lower @ lower.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self.loc
        return 0.5 * ((centred @ self.precision) * centred).sum(-1, keepdim=True)


@pytest.fixture
def quadratic_net(monkeypatch):
    """Every energy model built in the test gets a Quadratic instead of its declared net."""
    monkeypatch.setattr(energy_module, "build_net", lambda info: Quadratic(info.in_width))


def spec(fit: str = "", sample: str = "", dim: int = 2, name: str = "Q", extra: str = "") -> str:
    return (f"model {name} {{\n data x : real[{dim}]\n net E = MLP(hidden = [8])\n{extra}\n x ~ Energy(E)\n"
            f" fit {{ {fit} }}\n" + (f" sample {{ method = {sample} }}\n" if sample else "") + "}\n")


def gaussian_data(n: int, seed: int = 0, mean: torch.Tensor = MEAN, cov: torch.Tensor = COV) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return mean + torch.randn(n, len(mean), generator=gen) @ torch.linalg.cholesky(cov).T


def write_data(tmp_path, x: torch.Tensor):
    path = tmp_path / "gauss.npz"
    np.savez(path, x=x.numpy().astype(np.float32))
    return str(path)


def build(text: str):
    return compile_model(dgmdsl.loads(text).models[0], "cpu")


def set_quadratic(model, loc: torch.Tensor, precision: torch.Tensor) -> None:
    with torch.no_grad():
        model.energy_net.loc.copy_(loc)
        model.energy_net.factor.copy_(torch.linalg.cholesky(precision))


def gaussian_log_z(precision: torch.Tensor) -> float:
    dim = precision.shape[0]
    return 0.5 * dim * math.log(2 * math.pi) - 0.5 * float(torch.logdet(precision))


def learned_moments(model) -> tuple[torch.Tensor, torch.Tensor]:
    net = model.energy_net
    return net.loc.detach(), net.precision.detach()


# ---- options ----------------------------------------------------------------------------------
def test_positional_options_are_named_from_the_spec():
    # The checker's method.options drop positional arguments; the backend reads them back.
    model = build(spec("method = cd(sampler = mh(30, 0.2), buffer = 64), data = moons(n = 64)", "mala(40, 0.05)"))
    assert model.method_options() == {"sampler": {"name": "mh", "steps": 30, "proposal_scale": 0.2}, "buffer": 64}
    assert model.sampler == {"name": "mala", "steps": 40, "step_size": 0.05}
    nce = build(spec("method = nce(Normal(0, 3), ratio = 2), data = moons(n = 64)"))
    assert nce.method_options() == {"noise": {"name": "Normal", "loc": 0, "scale": 3}, "ratio": 2}
    assert energy_module.engine_options(nce, {"noise": {"name": "Normal"}})["noise"]["scale"] == 3
    assert build(spec("method = dsm(0.2), data = moons(n = 64)")).method_options() == {"sigma": 0.2}


def test_a_sampler_that_is_not_mcmc_is_a_user_error():
    with pytest.raises(RuntimeUserError, match="cannot be sampled by 'ancestral'"):
        build(spec("data = moons(n = 64)", "ancestral"))


# ---- log Z ------------------------------------------------------------------------------------
def test_quadrature_log_z_and_nll_of_a_gaussian_energy_are_exact(quadratic_net):
    model = build(spec("data = moons(n = 64)", "langevin(steps = 5, step_size = 0.01)"))
    data = gaussian_data(2000)
    model.initialize({"x": data})
    precision = torch.linalg.inv(COV)
    set_quadratic(model, MEAN, precision)
    metrics = model.evaluate({"x": data[:400]}, samples=50)
    assert metrics["log_z"] == pytest.approx(gaussian_log_z(precision), abs=1e-4)
    exact = torch.distributions.MultivariateNormal(MEAN, COV).log_prob(data[:400].double())
    assert metrics["nll_nats"] == pytest.approx(float(-exact.mean()), abs=1e-4)
    assert 0 <= metrics["log_z_truncation"] < 1e-6 and "512x512 cells" in metrics["log_z_method"]


def test_ais_log_z_of_a_3d_gaussian_energy_is_within_its_stderr(quadratic_net):
    model = build(spec("data = moons(n = 64)", "langevin(steps = 5, step_size = 0.01)", dim=3))
    cov = torch.tensor([[1.0, 0.2, 0.0], [0.2, 0.6, 0.1], [0.0, 0.1, 0.3]])
    data = gaussian_data(1000, mean=torch.tensor([1.0, 0.0, -1.0]), cov=cov)
    model.initialize({"x": data})
    precision = torch.linalg.inv(cov)
    set_quadratic(model, torch.tensor([1.0, 0.0, -1.0]), precision)
    metrics = model.evaluate({"x": data[:200]}, chains=128, temps=200, samples=20)
    assert metrics["kind"] == "NLL with log Z by AIS" and "128 chains, 200 intermediate" in metrics["log_z_method"]
    assert 0 < metrics["log_z_stderr"] < 0.05
    assert abs(metrics["log_z"] - gaussian_log_z(precision)) < 3 * metrics["log_z_stderr"] + 1e-3


# ---- sampling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler, rate", [("langevin(steps = 1000, step_size = 0.01)", None),
                                           ("mala(steps = 600, step_size = 0.05)", (0.6, 1.0)),
                                           ("mh(steps = 1500, proposal_scale = 0.6)", (0.3, 0.8))])
def test_spec_samplers_reproduce_a_gaussian_energy(quadratic_net, sampler, rate):
    model = build(spec("data = moons(n = 64)", sampler))
    set_quadratic(model, MEAN, torch.linalg.inv(COV))
    with torch.no_grad():  # chains start far from the target: N(3, 0.3^2) per dimension
        model.data_loc.fill_(3.0)
        model.data_scale.fill_(0.3)
    draws, info = model.draw(3000, seed=1)
    assert torch.equal(draws, model.sample(3000, seed=1)["x"])
    n = len(draws)
    mean_se = (COV.diagonal() / n).sqrt()
    assert ((draws.mean(0) - MEAN).abs() < 4 * mean_se).all()
    # Var of an empirical covariance entry is (S_ii S_jj + S_ij^2) / n; Langevin adds an O(eps) bias.
    cov_se = ((COV.diagonal()[:, None] * COV.diagonal()[None, :] + COV ** 2) / n).sqrt()
    assert ((torch.cov(draws.T) - COV).abs() < 4 * cov_se + 0.01).all()
    if rate is None:
        assert "acceptance_rate" not in info
    else:
        assert rate[0] < info["acceptance_rate"] < rate[1]


# ---- denoising score matching ---------------------------------------------------------------
def test_dsm_engine_recovers_the_noised_gaussian(tmp_path, quadratic_net):
    # The dsm engine calls model.dsm_loss; its optimum is the data convolved with N(0, sigma^2 I).
    # sigma is positional here: the backend reads it from the spec.
    sigma = 0.2
    data = gaussian_data(2000, seed=3)
    model = dgmdsl.loads(spec(f"method = dsm({sigma}), optimizer = adam(lr = 0.01), batch_size = 2000")).models[0]
    run = model.fit(data=write_data(tmp_path, data), max_steps=600, out=tmp_path / "run", quiet=True, device="cpu")
    assert type(run.engine).__name__ == "DenoisingScoreMatching"
    loc, precision = learned_moments(run.compiled)
    target = torch.linalg.inv(torch.cov(data.T) + sigma ** 2 * torch.eye(2))
    assert torch.allclose(loc, data.mean(0), atol=0.05)
    assert torch.allclose(precision, target, atol=0.05)
    # An explicit option wins over the spec's sigma: a much larger sigma gives a much larger loss.
    torch.manual_seed(1)
    wide = float(run.compiled.dsm_loss({"x": data}, {"sigma": 1.0}).detach())
    torch.manual_seed(1)
    assert wide > 1.5 * float(run.compiled.dsm_loss({"x": data}, {}).detach())


# ---- fce noise flow --------------------------------------------------------------------------
def test_fce_noise_flow_is_built_from_the_flow_block():
    flow = ("flow f {\n repeat 2 {\n affine_coupling(mask = alternate, net = MLP(hidden = [8], act = tanh))\n"
            " permute(reverse)\n }\n actnorm\n }")
    model = build(spec("method = fce(noise = f), data = moons(n = 64)", extra=flow))
    layers = [type(layer).__name__ for layer in model.noise_flow.flow.layers]
    assert layers == ["MaskedCoupling", "Permutation", "MaskedCoupling", "Permutation", "ActNorm"]
    assert any(isinstance(m, nn.Tanh) for m in model.noise_flow.modules())
    assert model.log_z.shape == ()
    model.initialize({"x": gaussian_data(500)})  # actnorm is set from the data
    assert torch.allclose(model.noise_flow.flow.layers[-1].bias.detach(), MEAN, atol=0.1)
    model.eval()
    # The flow is a density: it integrates to one on a grid wide enough for it.
    axis = torch.linspace(-8, 8, 401)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        mass = model.noise_flow.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=0.01)


# ---- dgm eval ---------------------------------------------------------------------------------
def test_dgm_eval_on_a_fitted_run_prints_nll_log_z_method_and_mmd(tmp_path, capsys):
    from dgmdsl.cli import main

    path = tmp_path / "ebm.dgm"
    path.write_text(spec("data = eight_gaussians(n = 200), batch_size = 50", "mala(steps = 20, step_size = 0.01)")
                    .replace("hidden = [8]", "hidden = [16], act = swish"))
    run = tmp_path / "run"
    assert main(["fit", str(path), "--max-steps", "4", "--out", str(run), "--quiet", "--device", "cpu"]) == 0
    assert main(["eval", str(run), "--limit", "100", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for key in ("nll_nats", "log_z: ", "log_z_method: quadrature", "truncation estimate", "mmd2:",
                "mmd2_noise_floor", "sampler: mala(steps = 20, step_size = 0.01)", "acceptance_rate"):
        assert key in out
    nll = float(next(line for line in out.splitlines() if "nll_nats" in line).split(":")[1])
    assert 0.0 < nll < 10.0
