"""Chain-rule densities: samples follow the model, NADE's incremental sampler, short fits."""
import itertools

import pytest
import torch

from dgmdsl.nn.autoregressive import AutoregressiveDensity, build_autoregressive

# (conditioner, options, event_shape, order)
TINY_CASES = {
    "linear": ("Linear", {}, (3,), "reverse"),
    "nade": ("NADE", {"hidden": 6}, (3,), [2, 0, 1]),
    "made": ("MADE", {"hidden": [8]}, (3,), ("random", 4)),
    "made_ensemble": ("MADE", {"hidden": [8], "masks": 3}, (3,), "raster"),
    "pixelcnn": ("PixelCNN", {"layers": 2, "channels": 4}, (1, 1, 3), "raster"),
    "pixelcnn_2_channels": ("PixelCNN", {"layers": 2, "channels": 4}, (2, 1, 2), "raster"),
}


def randomize(model: torch.nn.Module, seed: int, scale: float = 0.8) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * scale)


def empirical_frequencies(samples: torch.Tensor, levels: int) -> torch.Tensor:
    flat = samples.reshape(samples.shape[0], -1).long()
    weights = levels ** torch.arange(flat.shape[1] - 1, -1, -1)
    return torch.bincount((flat * weights).sum(-1), minlength=levels ** flat.shape[1]).double() / flat.shape[0]


def exact_probabilities(model: AutoregressiveDensity, levels: int) -> torch.Tensor:
    rows = list(itertools.product(range(levels), repeat=model.dim))
    x = torch.tensor(rows, dtype=torch.float64).view(-1, *model.event_shape)
    return model.log_prob(x).exp()


@pytest.mark.parametrize("case", sorted(TINY_CASES))
def test_binary_sample_frequencies_match_exact_probabilities(case):
    conditioner, options, shape, order = TINY_CASES[case]
    model = build_autoregressive("Bernoulli", None, conditioner, options, shape, order).double().eval()
    randomize(model, seed=1)
    samples = model.sample(20_000, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (20_000, *shape)
    probabilities = exact_probabilities(model, 2)
    assert probabilities.max() - probabilities.min() > 0.05  # a non-uniform target
    assert (empirical_frequencies(samples, 2) - probabilities).abs().max() < 0.015


@pytest.mark.parametrize(
    "family, options, levels",
    [("Categorical", {"K": 3}, 3), ("DiscretizedLogistic", {"K": 4}, 4)],
)
def test_multilevel_sample_frequencies_match_exact_probabilities(family, options, levels):
    model = build_autoregressive(family, options, "NADE", {"hidden": 5}, (2,)).double()
    randomize(model, seed=3, scale=0.6)
    samples = model.sample(20_000, generator=torch.Generator().manual_seed(4))
    probabilities = exact_probabilities(model, levels)
    assert (empirical_frequencies(samples, levels) - probabilities).abs().max() < 0.015


@pytest.mark.parametrize("family, options", [("Bernoulli", None), ("MixtureOfGaussians", {"K": 3})])
def test_nade_incremental_sampling_equals_naive_recomputation(family, options):
    model = build_autoregressive(family, options, "NADE", {"hidden": 16}, (10,), ("random", 7)).double()
    randomize(model, seed=5, scale=0.5)
    fast = model.sample(300, generator=torch.Generator().manual_seed(6))
    naive = model.conditioner.sample_naive(model.family, 300, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(fast.view(300, -1), naive, rtol=1e-9, atol=1e-9)
    assert 0.2 < fast.mean().item() < 0.8 if family == "Bernoulli" else fast.std().item() > 0.1


def test_sampling_is_reproducible_from_the_generator_seed():
    model = build_autoregressive("Bernoulli", None, "MADE", {"hidden": [8]}, (5,))
    randomize(model, seed=0)
    first = model.sample(50, generator=torch.Generator().manual_seed(11))
    again = model.sample(50, generator=torch.Generator().manual_seed(11))
    other = model.sample(50, generator=torch.Generator().manual_seed(12))
    assert torch.equal(first, again) and not torch.equal(first, other)


def noisy_copy_chain(n: int, dim: int, flip: float, seed: int) -> torch.Tensor:
    """x_0 ~ Bernoulli(1/2); each next bit copies the previous one, flipped w.p. ``flip``."""
    generator = torch.Generator().manual_seed(seed)
    flips = (torch.rand(n, dim, generator=generator) < flip).long()
    flips[:, 0] = (torch.rand(n, generator=generator) < 0.5).long()
    return (flips.cumsum(1) % 2).float()


def independent_bernoulli_nll(x: torch.Tensor) -> float:
    marginals = x.mean(0).clamp(1e-6, 1 - 1e-6)
    return -torch.distributions.Bernoulli(probs=marginals).log_prob(x).sum(-1).mean().item()


@pytest.mark.parametrize(
    "conditioner, options, context",
    [("Linear", {}, None), ("Linear", {}, 1), ("NADE", {"hidden": 16}, None)],
)
def test_short_fit_beats_the_independent_bernoulli_baseline(conditioner, options, context):
    torch.manual_seed(0)
    data = noisy_copy_chain(250, 8, flip=0.1, seed=1)
    model = build_autoregressive("Bernoulli", None, conditioner, options, (8,), "raster", context)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        loss = -model.log_prob(data).mean()
        loss.backward()
        optimizer.step()
    baseline = independent_bernoulli_nll(data)  # about 8 log 2 = 5.5 nats
    chain_entropy = 0.6931 + 7 * 0.3251  # log 2 + 7 H(0.1), about 2.97 nats
    fitted = -model.log_prob(data).mean().item()
    assert fitted < baseline - 2.0
    assert fitted == pytest.approx(chain_entropy, abs=0.25)
