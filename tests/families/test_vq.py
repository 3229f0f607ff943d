"""VQ-VAE: nearest-code quantization, the straight-through gradient, codebook updates
(EMA and loss) in closed form, and the evaluation's constants."""
import math

import pytest
import torch
import torch.nn.functional as F

import dgmdsl
from dgmdsl.families.vq import QUANTIZED
from dgmdsl.inference.base import TrainSettings
from dgmdsl.inference.vq import VQ

SPEC = """
model TinyVQ {
    data   x : real[4]
    latent k : cat(5)[2]
    param  codebook : real[5, 3]
    net enc = MLP(hidden = [8])
    net dec = MLP(hidden = [8])
    k ~ Categorical(probs = uniform)
    x ~ Normal(dec(codebook[k]), 0.5)
    guide { k = nearest(enc(x), codebook) }
    fit { method = vq(commitment = 0.5, codebook = CODEBOOK) }
}
"""


def make(codebook="ema(decay = 0.5)"):
    torch.manual_seed(0)
    model = dgmdsl.loads(SPEC.replace("CODEBOOK", codebook)).models[0].compile()
    return model, VQ(model, TrainSettings(optimizer=("sgd", {"lr": 0.1}), method_options={"commitment": 0.5}))


def batch(n=32):
    return {"x": torch.randn(n, 4, generator=torch.Generator().manual_seed(1))}


def test_nearest_picks_the_closest_code_per_row():
    model, _ = make()
    z = torch.randn(7, 2, 3)
    brute = torch.cdist(z.reshape(-1, 3), model.codebook.detach()).argmin(-1).reshape(7, 2)
    assert torch.equal(model.nearest(z), brute)


def test_straight_through_gradient_reaches_the_encoder():
    model, _ = make()
    captured = {}
    model.nets["enc"].register_forward_hook(lambda mod, inp, out: captured.update(z_e=out))
    terms = model.vq_terms(batch())
    grad_ze = torch.autograd.grad(terms.reconstruction.sum(), captured["z_e"], retain_graph=True)[0]
    # the decoder's gradient at the chosen codes, computed with the codes as a leaf
    codes = F.embedding(terms.codes, model.codebook.detach()).requires_grad_()
    env = {**model.inputs(batch()), "k": terms.codes, QUANTIZED: codes}
    grad_codes = torch.autograd.grad(-model._log_likelihood(env).sum(), codes)[0]
    assert grad_ze.abs().sum() > 0
    assert torch.allclose(grad_ze, grad_codes.reshape(grad_ze.shape), atol=1e-6)  # identity through argmin
    terms.reconstruction.mean().backward()
    assert model.nets["enc"][0].weight.grad.abs().sum() > 0


def test_ema_update_moves_codes_to_the_running_mean_of_their_encodings():
    model, engine = make("ema(decay = 0.5)")
    assert not model.codebook.requires_grad and model.ema_decay == 0.5
    old = model.codebook.detach().clone()
    terms = model.vq_terms(batch())
    model.ema_update(terms.encodings, terms.codes, 0.5)
    flat_z, flat_k = terms.encodings.reshape(-1, 3), terms.codes.reshape(-1)
    for i in range(5):
        assigned = flat_z[flat_k == i]
        # count and sum start at (1, old code): new = (0.5 old + 0.5 sum) / (0.5 + 0.5 n)
        expected = (old[i] + assigned.sum(0)) / (1 + len(assigned))
        assert torch.allclose(model.codebook[i], expected, atol=1e-4)
        if len(assigned):
            target = assigned.mean(0)
            assert (model.codebook[i] - target).norm() < (old[i] - target).norm()


def test_codebook_loss_moves_codes_toward_their_encodings():
    model, engine = make("loss")
    assert model.codebook.requires_grad and model.ema_decay is None
    old = model.codebook.detach().clone()
    terms = model.vq_terms(batch())
    loss = terms.codebook.mean()
    grad = torch.autograd.grad(loss, model.codebook)[0]
    flat_z, flat_k = terms.encodings.reshape(-1, 3), terms.codes.reshape(-1)
    for i in range(5):
        assigned = flat_z[flat_k == i]
        # d/d e_i of mean_b sum |sg(z) - e|^2 = (2 / B) sum over assigned z of (e_i - z)
        expected = 2 / 32 * (len(assigned) * old[i] - assigned.sum(0))
        assert torch.allclose(grad[i], expected, atol=1e-5)
    engine.train_step(batch(), 1)  # sgd(lr = 0.1) on the whole objective
    moved = model.codebook.detach()
    for i in flat_k.unique().tolist():
        target = flat_z[flat_k == i].mean(0)
        assert (moved[i] - target).norm() < (old[i] - target).norm()


def test_commitment_and_codebook_terms_enter_the_loss_as_configured():
    model, engine = make("loss")
    torch.manual_seed(3)
    loss, terms = engine.step_terms(batch())
    expected = (terms.reconstruction + 0.5 * terms.commitment + terms.codebook).mean()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert torch.allclose(terms.commitment, terms.codebook)  # same distance, different stop-gradient


def test_evaluate_reports_constant_kl_and_code_perplexity():
    model, _ = make()
    m = model.evaluate(batch(64), batch_size=16)
    assert m["kl_nats"] == pytest.approx(2 * math.log(5))
    assert m["nll_bound_nats"] == pytest.approx(m["reconstruction_nats"] + 2 * math.log(5))
    codes = model.vq_terms(batch(64)).codes.reshape(-1)
    usage = torch.bincount(codes, minlength=5).double() / codes.numel()
    usage = usage[usage > 0]
    assert m["perplexity"] == pytest.approx(float(torch.exp(-(usage * usage.log()).sum())), rel=1e-6)
    assert m["codes_used"] == len(usage)


def test_initialize_places_codes_on_encodings_and_samples_decode():
    model, _ = make()
    data = batch(200)
    model.initialize(data)
    with torch.no_grad():
        encodings = model.encoder(model.inputs(data)).reshape(-1, 3)
        nearest = torch.cdist(model.codebook, encodings).min(-1).values
    assert float(nearest.max()) < 0.01  # each code sits on some encoding
    assert torch.equal(model.ema_sum, model.codebook) and torch.equal(model.ema_count, torch.ones(5))
    out = model.sample(6, seed=2)
    assert out["k"].shape == (6, 2) and out["x"].shape == (6, 4)
    assert torch.equal(out["x"], model.sample(6, seed=2)["x"])
