"""Per-position families against closed forms; multi-level normalisation; build errors."""
import itertools

import pytest
import torch

from dgmdsl.nn.autoregressive import (
    Categorical,
    DiscretizedLogistic,
    MixtureOfGaussians,
    build_autoregressive,
    make_family,
    resolve_order,
)


def randomize(model: torch.nn.Module, seed: int, scale: float = 0.6) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * scale)


def test_mixture_of_gaussians_matches_torch_distributions():
    torch.manual_seed(0)
    family = MixtureOfGaussians(K=3)
    params = torch.randn(4, 5, 9, dtype=torch.float64)
    x = torch.randn(4, 5, dtype=torch.float64)
    logits, means, raw = params.split(3, -1)
    scales = torch.nn.functional.softplus(raw) + 1e-3
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits), torch.distributions.Normal(means, scales)
    )
    torch.testing.assert_close(family.log_prob(params, x), reference.log_prob(x))


def test_discretized_logistic_matches_differences_of_the_logistic_cdf():
    family = DiscretizedLogistic(K=5)
    loc = torch.tensor([-0.7, 0.0, 0.3, 0.9], dtype=torch.float64)
    log_scale = torch.tensor([-1.0, 0.2, -2.5, -0.3], dtype=torch.float64)
    params = torch.stack([loc, log_scale], -1).unsqueeze(1).expand(4, 5, 2)
    x = torch.arange(5, dtype=torch.float64).expand(4, 5)
    # Value k sits at 2k/4 - 1 on [-1, 1]; its bin is +-1/4 wide, end bins open.
    edges = torch.tensor([-0.75, -0.25, 0.25, 0.75], dtype=torch.float64)
    cdf = torch.sigmoid((edges - loc.unsqueeze(1)) / log_scale.exp().unsqueeze(1))
    cdf = torch.cat([torch.zeros(4, 1, dtype=cdf.dtype), cdf, torch.ones(4, 1, dtype=cdf.dtype)], 1)
    torch.testing.assert_close(family.log_prob(params, x).exp(), cdf.diff(dim=1))


def test_discretized_logistic_is_stable_for_far_away_and_very_narrow_bins():
    family = DiscretizedLogistic(K=256)
    params = torch.tensor([[[-1.0, -7.0], [-1.0, -7.0], [0.0, 3.0]]], dtype=torch.float64)
    x = torch.tensor([[255.0, 128.0, 0.0]], dtype=torch.float64)
    log_p = family.log_prob(params, x)[0]
    inv_scale_narrow, inv_scale_broad = torch.tensor([7.0, -3.0], dtype=torch.float64).exp()
    # Last bin, 2189 scale units away: log(1 - sigmoid(l)) = -softplus(l), about -2189.
    lower_last = (2.0 - 1 / 255) * inv_scale_narrow
    assert log_p[0].item() == pytest.approx(-torch.nn.functional.softplus(lower_last).item(), rel=1e-9)
    # Middle bin far in the tail: sigmoid(u) - sigmoid(l) underflows to 0 - 0 naively.
    lower_mid = (2 * 128 / 255 - 1 / 255) * inv_scale_narrow
    assert log_p[1].item() == pytest.approx(-lower_mid.item(), rel=1e-3)
    # First bin of a broad logistic: log sigmoid((-1 + 1/255 - loc) / s).
    first = torch.nn.functional.logsigmoid((-1 + 1 / 255) * inv_scale_broad)
    assert log_p[2].item() == pytest.approx(first.item(), rel=1e-12)


@pytest.mark.parametrize("conditioner, options", [("Linear", {}), ("NADE", {"hidden": 6}), ("MADE", {"hidden": [10]})])
@pytest.mark.parametrize("family, options_, levels", [("Categorical", {"K": 3}, 3), ("DiscretizedLogistic", {"K": 4}, 4)])
def test_multilevel_models_sum_to_one_over_all_configurations(conditioner, options, family, options_, levels):
    model = build_autoregressive(family, options_, conditioner, options, (2,), "reverse").double()
    randomize(model, seed=2)
    x = torch.tensor(list(itertools.product(range(levels), repeat=2)), dtype=torch.float64)
    probabilities = model.log_prob(x).exp()
    assert probabilities.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert probabilities.max() > 1.5 / levels ** 2  # not trivially uniform


def test_categorical_pixelcnn_with_two_channels_sums_to_one():
    model = build_autoregressive("Categorical", {"K": 3}, "PixelCNN", {"layers": 2, "channels": 6}, (2, 1, 2)).double()
    randomize(model, seed=3, scale=0.4)
    x = torch.tensor(list(itertools.product(range(3), repeat=4)), dtype=torch.float64).view(-1, 2, 1, 2)
    assert model.log_prob(x).exp().sum().item() == pytest.approx(1.0, abs=1e-6)


def test_rnade_density_integrates_to_one_over_a_grid():
    model = build_autoregressive("MixtureOfGaussians", {"K": 3}, "NADE", {"hidden": 8}, (2,)).double()
    randomize(model, seed=4, scale=0.5)
    axis = torch.linspace(-9.0, 9.0, 721, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        density = model.log_prob(grid).exp().view(721, 721)
    mass = torch.trapezoid(torch.trapezoid(density, axis, dim=1), axis).item()
    assert mass == pytest.approx(1.0, abs=1e-2)
    # The second coordinate really depends on the first (not a product of marginals).
    marginal_0 = torch.trapezoid(density, axis, dim=1)
    marginal_1 = torch.trapezoid(density, axis, dim=0)
    product = marginal_0.unsqueeze(1) * marginal_1.unsqueeze(0)
    assert (density - product).abs().max() > 1e-2


@pytest.mark.parametrize(
    "order, message",
    [
        ([0, 1, 1, 3], "repeats \\[1\\] and omits \\[2\\]"),
        ([0, 1, 2], "3 entries but the variable has 4"),
        ([0, 1, 2, 7], "outside the positions 0..3"),
        ("zigzag", "unknown order"),
        (("random", 1.5), "integer seed"),
    ],
)
def test_bad_orders_are_rejected_with_a_clear_message(order, message):
    with pytest.raises(ValueError, match=message):
        resolve_order(order, 4)


def test_random_order_is_a_seeded_permutation():
    first, again, other = resolve_order(("random", 3), 50), resolve_order(("random", 3), 50), resolve_order(("random", 4), 50)
    assert sorted(first.tolist()) == list(range(50))
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("Bernoulli", None, "PixelCNN", None, (1, 4, 4), "reverse", None), "fix the raster order"),
        (("Bernoulli", None, "PixelCNN", None, (16,), "raster", None), "\\[C, H, W\\]"),
        (("Bernoulli", None, "PixelCNN", None, (1, 4, 4), "raster", 2), "context is not supported"),
        (("Bernoulli", None, "NADE", None, (8,), "raster", 2), "use conditioner = MADE"),
        (("Bernoulli", None, "Transformer", None, (8,), "raster", None), "unknown conditioner"),
        (("Poisson", None, "NADE", None, (8,), "raster", None), "unknown per-position family"),
        (("Bernoulli", None, "NADE", {"hiden": 4}, (8,), "raster", None), "does not take \\['hiden'\\]"),
        (("Bernoulli", None, "Linear", None, (8,), "raster", -1), "context must be None or an integer"),
        (("Categorical", {"K": 1}, "Linear", None, (8,), "raster", None), "K >= 2"),
        (("Bernoulli", None, "MADE", {"masks": 0}, (8,), "raster", None), "masks >= 1"),
    ],
)
def test_unsupported_combinations_raise_value_error(arguments, message):
    with pytest.raises(ValueError, match=message):
        build_autoregressive(*arguments)


def test_defaults_follow_the_papers():
    nade = build_autoregressive("Bernoulli", None, "NADE", None, (784,))
    assert nade.conditioner.W.shape == (784, 1, 500) and nade.conditioner.act is torch.sigmoid
    made = build_autoregressive("Bernoulli", None, "MADE", {"hidden": 300}, (20,))
    assert [layer.out_features for layer in made.conditioner.layers] == [300, 20]
    assert make_family("Categorical", {"K": 4}).params_per_position == 4
    assert isinstance(make_family("Categorical", {"K": 4}), Categorical)


def test_log_prob_keeps_batch_dimensions_and_checks_the_event_shape():
    model = build_autoregressive("Bernoulli", None, "MADE", {"hidden": [8]}, (2, 3))
    x = torch.randint(0, 2, (4, 5, 2, 3)).float()
    assert model.log_prob(x).shape == (4, 5)
    with pytest.raises(ValueError, match="shape mismatch"):
        model.log_prob(torch.zeros(4, 6))
