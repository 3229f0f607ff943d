"""The NCSN backend: noise levels from the spec, annealed Langevin with the exact score of
Gaussian data plugged in, a trained score against the analytic one, evaluation."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import dgmdsl
from dgmdsl.numerics.ncsn import sigma_from_level
from dgmdsl.runtime.errors import RuntimeUserError

MU = torch.tensor([1.0, -0.5])
STD = torch.tensor([0.5, 1.5])


def spec(sigmas: str = ", sigmas = geometric(5, 0.01, 8)", sample: str = "annealed_langevin(100, 2e-5)",
         data: str = "real[2]", fit: str = "data = moons(n = 256, seed = 0)", hidden: str = "[16]") -> str:
    return f"""model N {{
    data x : {data}
    net  s = MLP(hidden = {hidden}, act = swish)
    x ~ ScoreModel(s{sigmas})
    fit {{ {fit}, batch_size = 64 }}
    sample {{ method = {sample} }}
}}"""


def test_noise_levels_come_from_the_spec():
    model = dgmdsl.loads(spec())["N"].compile()
    torch.testing.assert_close(model.sigmas, torch.tensor([5 * (0.002 ** (i / 7)) for i in range(8)]))
    default = dgmdsl.loads(spec(sigmas=""))["N"].compile()
    torch.testing.assert_close(default.sigmas, torch.logspace(0, -2, 10))
    assert model.sampler == {"name": "annealed_langevin", "steps_per_level": 100, "eps": 2e-5}


class ExactGaussianNet(nn.Module):
    """sigma * score of N(MU, STD^2 + sigma^2), fed x / sqrt(1 + sigma^2) as the model does."""

    def __init__(self, sigmas: torch.Tensor) -> None:
        super().__init__()
        self.sigmas = sigmas

    def forward(self, x_in: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        sigma = sigma_from_level(level, self.sigmas).reshape(-1, 1)
        x = x_in * (1 + sigma**2).sqrt()
        return -sigma * (x - MU) / (STD**2 + sigma**2)


def test_annealed_langevin_reproduces_gaussian_data_with_the_exact_score():
    # steps eps * sigma_i^2 / sigma_L^2 from 1.8 down: the chains mix at every level but the last few
    model = dgmdsl.loads(spec(sigmas=", sigmas = geometric(3, 0.05, 8)", sample="annealed_langevin(100, 5e-4)"))
    model = model["N"].compile()
    model.net = ExactGaussianNet(model.sigmas)
    x = model.sample(3000, seed=0)["x"]
    torch.testing.assert_close(x.mean(0), MU, atol=0.07, rtol=0)
    torch.testing.assert_close(x.std(0), STD, atol=0.0, rtol=0.05)


def relative_score_errors(compiled, mu: float, std: float) -> list[float]:
    """Relative L2 error of the score against the analytic one, on draws of each noisy marginal."""
    generator = torch.Generator().manual_seed(1)
    errors = []
    for level, sigma in zip(torch.linspace(1, 0, len(compiled.sigmas)), compiled.sigmas):
        spread = math.sqrt(std**2 + float(sigma) ** 2)
        x = mu + spread * torch.randn(2000, 1, generator=generator)
        with torch.no_grad():
            score = compiled.score(x, level.expand(2000))
        analytic = -(x - mu) / spread**2
        errors.append(float((score - analytic).norm() / analytic.norm()))
    return errors


def test_trained_score_of_scalar_gaussian_data_approaches_the_analytic_score(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "x.npz", x=(0.5 + 0.8 * rng.standard_normal(4096)).astype(np.float32))
    text = spec(sigmas=", sigmas = geometric(2, 0.3, 4)", data="real", hidden="[32, 32]",
                fit='data = "x.npz", optimizer = adam(lr = 3e-3)')
    model = dgmdsl.loads(text)["N"]
    torch.manual_seed(0)  # the weights fit starts from
    untrained = relative_score_errors(model.compile(), 0.5, 0.8)
    run = model.fit(data=tmp_path / "x.npz", max_steps=600, batch_size=256, out=tmp_path / "run", quiet=True,
                    device="cpu")
    trained = relative_score_errors(run.compiled, 0.5, 0.8)
    assert min(untrained) > 0.5
    assert max(trained) < 0.2, trained


def test_evaluation_reports_sample_mmd_and_no_nll(tmp_path):
    run = dgmdsl.loads(spec(sample="annealed_langevin(5, 1e-3)"))["N"].fit(
        max_steps=5, out=tmp_path / "run", quiet=True, device="cpu")
    metrics = run.evaluate(limit=200, batch_size=100)
    assert "nll_nats" not in metrics and "no tractable density" in metrics["kind"]
    assert metrics["mmd_samples"] == 100 and metrics["mmd"] > metrics["mmd_noise_floor"] >= 0


def test_dsm_sigma_is_an_error_for_ncsn():
    with pytest.raises(RuntimeUserError, match="does not apply"):
        dgmdsl.loads(spec(fit="data = moons(n = 64), method = dsm(sigma = 0.1)"))["N"].compile()
