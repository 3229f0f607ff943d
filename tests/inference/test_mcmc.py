"""NUTS on a conjugate model: the posterior is known in closed form."""
import numpy as np
import pytest
import torch

import dgmdsl

CONJUGATE = """model Conjugate {
    data  y : real
    param m : real
    m ~ Normal(0, 2)
    y ~ Normal(m, 1)
}
"""


def test_nuts_recovers_closed_form_posterior(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.normal(1.3, 1.0, size=40).astype(np.float32)
    np.savez(tmp_path / "y.npz", y=y)
    model = dgmdsl.loads(CONJUGATE)["Conjugate"]
    assert model.method == "nuts"
    run = model.fit(data=str(tmp_path / "y.npz"), max_steps=600, out=tmp_path / "run", quiet=True)
    prec = 1 / 4 + len(y)
    mean, sd = y.sum() / prec, prec ** -0.5
    stats = run.fit_result["posterior"]["m"]
    ess = stats["ess"][0]
    assert stats["mean"][0] == pytest.approx(mean, abs=4 * sd / np.sqrt(ess))
    assert stats["sd"][0] == pytest.approx(sd, rel=0.2)
    assert stats["r_hat"][0] < 1.05
    reopened = dgmdsl.open_run(tmp_path / "run", device="cpu")
    assert torch.equal(reopened.posterior["m"], run.posterior["m"])
    metrics = reopened.evaluate(data=str(tmp_path / "y.npz"))
    assert metrics["kind"] == "posterior predictive NLL"
    predictive_sd = (1 + sd ** 2) ** 0.5
    exact = np.mean(0.5 * ((y - mean) / predictive_sd) ** 2 + np.log(predictive_sd * np.sqrt(2 * np.pi)))
    assert metrics["nll_nats"] == pytest.approx(exact, abs=0.02)


def test_bayes_logreg_posterior_covers_the_mle(tmp_path):
    """With weak priors the posterior mean sits at the maximum-likelihood fit of the same data."""
    from dgmdsl.data import toy_dataset

    from tests.conftest import ROOT

    model = dgmdsl.load(ROOT / "specs" / "bayes_logreg.dgm")["BayesLogReg"]
    run = model.fit(max_steps=400, out=tmp_path / "run", quiet=True)
    data = toy_dataset("logistic_toy", n=500, seed=0)
    x = torch.tensor(data["x"], dtype=torch.float64)
    y = torch.tensor(data["y"], dtype=torch.float64)
    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200)

    def closure():
        opt.zero_grad()
        # the spec's priors N(0, 1) on w and N(0, 5) on b: the posterior mode
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w[:3] + w[3], y, reduction="sum")
        loss = loss + 0.5 * (w[:3] ** 2).sum() + 0.5 * (w[3] / 5) ** 2
        loss.backward()
        return loss
    opt.step(closure)
    post = run.fit_result["posterior"]
    means = post["w"]["mean"] + post["b"]["mean"]
    sds = post["w"]["sd"] + post["b"]["sd"]
    for m, s, mode in zip(means, sds, w.detach().tolist()):
        assert abs(m - mode) < 0.5 * s
