"""Chain-rule densities: exact normalisation and the autoregressive property."""
import itertools

import pytest
import torch

from dgmdsl.nn.autoregressive import AutoregressiveDensity, build_autoregressive

EXPLICIT_ORDER = [3, 0, 5, 1, 4, 2]

# (conditioner, options, event_shape, order, context)
BINARY_CASES = {
    "linear": ("Linear", {}, (6,), "raster", None),
    "linear_context1": ("Linear", {}, (6,), "reverse", 1),
    "linear_context0": ("Linear", {}, (6,), "raster", 0),
    "linear_context2_random": ("Linear", {}, (6,), ("random", 3), 2),
    "nade": ("NADE", {"hidden": 7}, (6,), "raster", None),
    "nade_random_order": ("NADE", {"hidden": 7}, (6,), ("random", 1), None),
    "made": ("MADE", {"hidden": [12, 10]}, (6,), "raster", None),
    "made_3_masks": ("MADE", {"hidden": [12, 10], "masks": 3}, (6,), "raster", None),
    "made_context2": ("MADE", {"hidden": [16, 16]}, (6,), ("random", 5), 2),
    "made_explicit_order": ("MADE", {"hidden": 12}, (6,), EXPLICIT_ORDER, None),
    "masked_net": ("MaskedNet", {"hidden": [9]}, (6,), "raster", None),
    "pixelcnn": ("PixelCNN", {"layers": 3, "channels": 6}, (1, 2, 3), "raster", None),
    "pixelcnn_2_channels": ("PixelCNN", {"layers": 2, "channels": 8}, (2, 1, 3), "raster", None),
    "nade_explicit_order": ("NADE", {"hidden": 5}, (6,), EXPLICIT_ORDER, None),
}


def randomize(model: torch.nn.Module, seed: int, scale: float = 0.7) -> None:
    """Non-trivial weights, so that every allowed dependency is actually used."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * scale)


def make_binary(case: str, seed: int = 0) -> AutoregressiveDensity:
    conditioner, options, shape, order, context = BINARY_CASES[case]
    model = build_autoregressive("Bernoulli", None, conditioner, options, shape, order, context).double()
    randomize(model, seed)
    return model.eval()


def all_binary(shape: tuple[int, ...]) -> torch.Tensor:
    count = torch.Size(shape).numel()
    rows = list(itertools.product([0.0, 1.0], repeat=count))
    return torch.tensor(rows, dtype=torch.float64).view(-1, *shape)


@pytest.mark.parametrize("case", sorted(BINARY_CASES))
def test_probabilities_of_all_binary_vectors_sum_to_one(case):
    model = make_binary(case)
    x = all_binary(model.event_shape)
    total = model.log_prob(x).exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_each_made_connectivity_and_the_ensemble_normalise():
    model = make_binary("made_3_masks")
    x = all_binary((6,))
    per_mask = [model.conditional_log_probs(x, index).sum(-1) for index in range(3)]
    for log_p in per_mask:
        assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    # Eval-mode log_prob is the log of the mean of the three likelihoods.
    mean = torch.stack(per_mask).exp().mean(0)
    torch.testing.assert_close(model.log_prob(x), mean.log())
    assert not torch.allclose(per_mask[0], per_mask[1])  # the connectivities really differ


def test_made_training_mode_uses_the_current_mask_and_cycles():
    model = make_binary("made_3_masks").train()
    x = all_binary((6,))[:10]
    seen = []
    for index in range(4):
        assert model.conditioner.mask_index == index % 3
        torch.testing.assert_close(model.log_prob(x), model.conditional_log_probs(x, index % 3).sum(-1))
        seen.append(model.log_prob(x))
        model.next_mask()
    torch.testing.assert_close(seen[0], seen[3])
    assert sorted(set(model.conditioner.orders[1].tolist())) == list(range(6))


def test_normalisation_check_detects_a_leaky_mask():
    model = make_binary("linear")
    with torch.no_grad():
        model.conditioner.mask.fill_diagonal_(1.0)  # position i now reads x_i itself
    total = model.log_prob(all_binary((6,))).exp().sum().item()
    assert abs(total - 1.0) > 1e-2


def ranks_of(order: list[int]) -> dict[int, int]:
    return {position: step for step, position in enumerate(order)}


def expected_dependencies(order: list[int], context: int | None) -> torch.Tensor:
    rank = ranks_of(order)
    allowed = torch.zeros(len(order), len(order), dtype=torch.bool)
    for i, j in itertools.product(range(len(order)), repeat=2):
        lag = rank[i] - rank[j]
        allowed[i, j] = lag > 0 and (context is None or lag <= context)
    return allowed


def pixel_order(channels: int, height: int, width: int) -> list[int]:
    return [c * height * width + h * width + w for h in range(height) for w in range(width) for c in range(channels)]


def dependency_jacobian(model: AutoregressiveDensity, mask_index: int | None = None) -> torch.Tensor:
    """``|d params_i / d x_j|`` summed over parameters, at a generic real-valued input."""
    x = torch.rand(model.dim, generator=torch.Generator().manual_seed(9), dtype=torch.float64)

    def params(flat: torch.Tensor) -> torch.Tensor:
        features = model.family.encode(flat.view(1, -1))
        return model.conditioner(features, mask_index)[0]

    jacobian = torch.autograd.functional.jacobian(params, x)  # [D, P, D]
    return jacobian.abs().sum(1)


GRADIENT_CASES = {
    "linear": (None, True),
    "linear_context1": (1, True),
    "linear_context2_random": (2, True),
    "nade": (None, True),
    "nade_random_order": (None, True),
    "made": (None, False),
    "made_context2": (2, False),
    "made_explicit_order": (None, False),
    "pixelcnn": (None, False),
    "pixelcnn_2_channels": (None, False),
}


@pytest.mark.parametrize("case", sorted(GRADIENT_CASES))
def test_conditionals_depend_only_on_allowed_positions(case):
    context, every_allowed_used = GRADIENT_CASES[case]
    model = make_binary(case)
    shape = model.event_shape
    order = model.order.tolist()
    if len(shape) == 3:
        assert order == pixel_order(*shape)  # pixels in raster order, channels inside a pixel
    if case == "made_explicit_order":
        assert order == EXPLICIT_ORDER
    allowed = expected_dependencies(order, context)
    sensitivity = dependency_jacobian(model)
    assert torch.all(sensitivity[~allowed] == 0)
    used = sensitivity[allowed] > 1e-8
    assert used.any()
    if every_allowed_used:
        assert used.all()
    else:
        assert used.float().mean() > 0.5


def test_every_made_connectivity_respects_its_own_order():
    model = make_binary("made_3_masks")
    orders = model.conditioner.orders.tolist()
    assert len({tuple(order) for order in orders}) == 3
    for index, order in enumerate(orders):
        allowed = expected_dependencies(order, None)
        sensitivity = dependency_jacobian(model, index)
        assert torch.all(sensitivity[~allowed] == 0)
        assert (sensitivity[allowed] > 1e-8).float().mean() > 0.5


def test_context_zero_makes_positions_independent():
    model = make_binary("linear_context0")
    x = all_binary((6,))
    marginals = torch.sigmoid(model.conditioner.bias[:, 0])
    expected = torch.distributions.Bernoulli(probs=marginals).log_prob(x).sum(-1)
    torch.testing.assert_close(model.log_prob(x), expected)


def test_dense_and_banded_linear_agree_when_the_window_is_the_full_history():
    dense = make_binary("linear")
    banded = build_autoregressive("Bernoulli", None, "Linear", {}, (6,), "raster", 4).double()
    # Window 4 on D = 6 misses only lag 5: copy the dense weights with that lag zeroed.
    with torch.no_grad():
        weight = dense.conditioner.weight * dense.conditioner.mask
        weight[5, 0] = 0.0
        for step in range(6):
            for back in range(1, min(step, 4) + 1):
                banded.conditioner.weight[step, 0, 0, 4 - back] = weight[step, step - back]
        banded.conditioner.bias.copy_(dense.conditioner.bias.view(6, 1))
        dense.conditioner.weight.copy_(weight)
    x = all_binary((6,))
    torch.testing.assert_close(banded.log_prob(x), dense.log_prob(x))


def test_checkpoints_hold_weights_only_and_rebuild_the_same_masks():
    model = make_binary("made_3_masks")
    assert all("mask" not in key and "order" not in key for key in model.state_dict())
    conditioner, options, shape, order, context = BINARY_CASES["made_3_masks"]
    rebuilt = build_autoregressive("Bernoulli", None, conditioner, options, shape, order, context).double().eval()
    rebuilt.load_state_dict(model.state_dict())
    x = all_binary((6,))
    torch.testing.assert_close(rebuilt.log_prob(x), model.log_prob(x))
    reseeded = build_autoregressive("Bernoulli", None, "MADE", {**options, "seed": 1}, shape, order, context)
    assert not torch.equal(reseeded.conditioner.orders, model.conditioner.orders)
