"""Bayes nets and mixtures end to end: tables, enumeration, missing values, sampling."""
import itertools
import math

import numpy as np
import pytest
import torch

import dgmdsl
from dgmdsl.runtime.api import compile_model
from tests.conftest import ROOT

SPECS = ROOT / "specs"



def test_learned_sprinkler_recovers_every_table_entry(tmp_path):
    truth = {"cloudy": [0.5], "sprinkler": [0.5, 0.1], "rain": [0.2, 0.8], "wet": [[0.0, 0.9], [0.9, 0.99]]}
    model = dgmdsl.load(SPECS / "sprinkler.dgm")["SprinklerLearned"]
    run = model.fit(batch_size=1000, epochs=25, lr=0.05, out=tmp_path / "run", quiet=True)
    for name, expected in truth.items():
        table = run.compiled.pieces[f"{name}_probs_table"].value.detach()
        learned = torch.sigmoid(table).numpy()
        np.testing.assert_allclose(learned.reshape(np.shape(expected)), expected, atol=0.02, err_msg=name)
    answer = run.query("rain | wet = 1")["rain"][1]
    assert answer == pytest.approx(0.708, abs=0.02)


TINY = """model Tiny {
    data   x : real
    latent a : binary
    latent b : cat(3)
    a ~ Bernoulli(0.3)
    b ~ Categorical(probs = [[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]][a])
    x ~ Normal([[-1.0, 0.0, 2.0], [1.0, 3.0, -2.0]][a, b], 0.7)
}
"""


def test_enumeration_equals_brute_force():
    compiled = compile_model(dgmdsl.loads(TINY)["Tiny"])
    x = torch.tensor([-0.5, 0.3, 2.2, 4.0])
    pa = [0.7, 0.3]
    pb = [[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]
    mu = [[-1.0, 0.0, 2.0], [1.0, 3.0, -2.0]]
    expected = []
    for xi in x.tolist():
        total = sum(pa[a] * pb[a][b] * math.exp(-0.5 * ((xi - mu[a][b]) / 0.7) ** 2) / (0.7 * math.sqrt(2 * math.pi))
                    for a, b in itertools.product(range(2), range(3)))
        expected.append(math.log(total))
    got = compiled.log_prob({"x": x})
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-5)


def test_enumeration_matches_pyro_trace_enum():
    import pyro
    from pyro.infer import TraceEnum_ELBO

    compiled = compile_model(dgmdsl.loads(TINY)["Tiny"])
    x = torch.tensor([-0.5, 0.3, 2.2, 4.0])
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    pyro.clear_param_store()
    loss = elbo.loss(lambda: compiled.pyro_model({"x": x}), lambda: None)
    assert float(loss) == pytest.approx(-float(compiled.log_prob({"x": x}).sum()), rel=1e-5)


def test_gmm_places_its_eight_means(tmp_path):
    from dgmdsl.data import toy_modes

    model = dgmdsl.load(SPECS / "gmm.dgm")["GaussianMixture"]
    run = model.fit(max_steps=1500, out=tmp_path / "gmm", quiet=True)
    means = run.compiled.params["mu"].detach().numpy()
    modes, _ = toy_modes("eight_gaussians")
    distances = np.linalg.norm(means[:, None, :] - modes[None, :, :], axis=-1)
    assert sorted(distances.argmin(axis=1).tolist()) == list(range(8))
    assert distances.min(axis=1).max() < 0.1
    resp = run.query(f"k | x = [{modes[3][0]}, {modes[3][1]}]")["k"]
    assert max(resp) > 0.99 and sum(resp) == pytest.approx(1.0)


NB = """model NB {
    data label : binary
    data words : binary[6]
    label ~ Bernoulli(probs = table())
    words ~ Bernoulli(probs = table(label))
}
"""


def test_missing_label_is_summed_out_and_missing_leaf_entries_drop():
    compiled = compile_model(dgmdsl.loads(NB)["NB"])
    words = torch.tensor([[1, 0, 1, 1, 0, 0]])
    both = [compiled.log_prob({"label": torch.tensor([v]), "words": words}) for v in (0, 1)]
    missing = compiled.log_prob({"label": torch.tensor([-1]), "words": words})
    assert float(missing.detach()) == pytest.approx(float(torch.logsumexp(torch.stack(both), 0).detach()), rel=1e-6)
    partial = torch.tensor([[1, -1, 1, -1, -1, -1]])
    dropped = compiled.log_prob({"label": torch.tensor([1]), "words": partial})
    kept = compiled.log_prob({"label": torch.tensor([1]), "words": torch.tensor([[1, 0, 1, 0, 0, 0]])})
    p = 0.5  # untrained tables are uniform
    assert float(dropped.detach()) == pytest.approx(float(kept.detach()) - 4 * math.log(p), rel=1e-6)


def test_naive_bayes_classifies_at_bayes_optimal_accuracy(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 4000, 6
    prior, cond = 0.4, np.array([[0.2, 0.7, 0.5, 0.1, 0.8, 0.3], [0.8, 0.3, 0.5, 0.6, 0.2, 0.9]])
    label = (rng.random(n) < prior).astype(np.int64)
    words = (rng.random((n, d)) < cond[label]).astype(np.int64)
    np.savez(tmp_path / "train.npz", label=label[:3000], words=words[:3000])
    model = dgmdsl.loads(NB)["NB"]
    run = model.fit(data=str(tmp_path / "train.npz"), batch_size=500, epochs=40, lr=0.05,
                    out=tmp_path / "run", quiet=True)
    test_w, test_l = words[3000:], label[3000:]
    log_post1 = np.log(prior) + (np.log(cond[1]) * test_w + np.log(1 - cond[1]) * (1 - test_w)).sum(1)
    log_post0 = np.log(1 - prior) + (np.log(cond[0]) * test_w + np.log(1 - cond[0]) * (1 - test_w)).sum(1)
    optimal = ((log_post1 > log_post0) == test_l).mean()
    predicted = [int(np.argmax(run.query(f"label | words = {list(map(int, w))}")["label"])) for w in test_w[:300]]
    ours = (np.array(predicted) == test_l[:300]).mean()
    optimal_300 = ((log_post1[:300] > log_post0[:300]) == test_l[:300]).mean()
    assert optimal > 0.8
    assert abs(ours - optimal_300) <= 0.02


def test_sampling_matches_fixed_tables():
    compiled = compile_model(dgmdsl.load(SPECS / "sprinkler.dgm")["Sprinkler"])
    draws = compiled.sample(20000, seed=3)
    assert abs(draws["cloudy"].float().mean() - 0.5) < 0.015
    rain_given_cloudy = draws["rain"][draws["cloudy"] == 1].float().mean()
    assert abs(rain_given_cloudy - 0.8) < 0.02
    again = compiled.sample(20000, seed=3)
    assert all(torch.equal(draws[k], again[k]) for k in draws)
