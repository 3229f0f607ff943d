"""The autoregressive backend: specs -> exact chain-rule densities (the maths itself is
tested in tests/nn; these tests check that what the spec says reaches the density)."""
import itertools
import math

import numpy as np
import pytest
import torch

import dgmdsl
from dgmdsl.cli import main as dgm_main
from dgmdsl.frontend.diagnostics import DgmError


def compiled(body: str, decl: str = "data x : binary[6]", nets: str = "", seed: int = 0):
    source = f"model T {{\n    {decl}\n    {nets}\n    x ~ Autoregressive({body})\n}}\n"
    torch.manual_seed(seed)
    model = dgmdsl.loads(source).models[0]
    return model.compile().eval()


def sharpen(model, factor: float = 3.0):
    """Scale every weight so conditionals are far from uniform (a test that can fail)."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(factor)
    return model


ALL_BINARY = torch.tensor(list(itertools.product([0, 1], repeat=6)))

CONDITIONERS = {
    "fvsbn": ("Bernoulli, conditioner = Linear", "data x : binary[6]", ""),
    "markov": ("Bernoulli, conditioner = Linear, context = 2", "data x : binary[6]", ""),
    "nade": ("Bernoulli, conditioner = NADE(hidden = 7)", "data x : binary[6]", ""),
    "made": ("Bernoulli, conditioner = MADE(hidden = [11, 9])", "data x : binary[6]", ""),
    "made_ensemble": ("Bernoulli, conditioner = MADE(hidden = [11], masks = 3)", "data x : binary[6]", ""),
    "pixelcnn": ("Bernoulli, conditioner = PixelCNN(layers = 2, channels = 4)", "data x : binary[1, 2, 3]", ""),
    "mlp_net": ("Bernoulli, conditioner = f, order = reverse", "data x : binary[6]",
                "net f = MLP(hidden = [10], act = tanh)"),
}
# The checker does not yet count a net used as a conditioner as used ("declared but never
# used"); strict, so the marker must go once frontend/checks/constructs.py records the use.


@pytest.mark.parametrize("case", [c
                                  for c in sorted(CONDITIONERS)])
def test_every_conditioner_sums_to_one_over_all_binary_vectors(case):
    body, decl, nets = CONDITIONERS[case]
    model = sharpen(compiled(body, decl, nets))
    shape = model.spec.vars["x"].type.shape
    with torch.no_grad():
        probs = model.log_prob({"x": ALL_BINARY.reshape(64, *shape)}).double().exp()
    assert abs(float(probs.sum()) - 1.0) < 1e-5
    assert float(probs.max()) > 3 / 64  # sharpened: far from uniform, so the sum is informative


def expected_dependencies(order: list[int], context: int | None) -> torch.Tensor:
    """(i, j) True where conditional i may read input j: j earlier in the order, within the window."""
    rank = {position: step for step, position in enumerate(order)}
    dim = len(order)
    allowed = torch.zeros(dim, dim, dtype=torch.bool)
    for i, j in itertools.product(range(dim), repeat=2):
        lag = rank[i] - rank[j]
        allowed[i, j] = lag > 0 and (context is None or lag <= context)
    return allowed


def conditional_jacobian(model) -> torch.Tensor:
    """d log p(x_i | ...) / d x_j at a point in the interior of the cube, off-diagonal only."""
    density = model.densities["x"]
    point = torch.full((density.dim,), 0.3) + 0.05 * torch.arange(density.dim)
    jac = torch.autograd.functional.jacobian(
        lambda x: density.conditional_log_probs(x.view(1, *density.event_shape))[0], point)
    return jac.masked_fill(torch.eye(density.dim, dtype=torch.bool), 0.0)


ORDER_CASES = [
    ("NADE(hidden = 7)", "reverse", None, [5, 4, 3, 2, 1, 0]),
    ("MADE(hidden = [13])", "random(seed = 5)", None,
     torch.randperm(6, generator=torch.Generator().manual_seed(5)).tolist()),
    ("MADE(hidden = [13, 13])", "[3, 1, 4, 0, 5, 2]", 2, [3, 1, 4, 0, 5, 2]),
    ("Linear", "[2, 0, 1, 5, 4, 3]", 1, [2, 0, 1, 5, 4, 3]),
    ("Linear", "reverse", 0, [5, 4, 3, 2, 1, 0]),
]


@pytest.mark.parametrize("conditioner, order, context, visit", ORDER_CASES)
def test_order_and_context_from_the_spec_reach_the_density(conditioner, order, context, visit):
    window = "" if context is None else f", context = {context}"
    model = sharpen(compiled(f"Bernoulli, conditioner = {conditioner}, order = {order}{window}"))
    assert model.densities["x"].order.tolist() == visit
    allowed = expected_dependencies(visit, context)
    jac = conditional_jacobian(model)
    assert torch.all(jac[~allowed] == 0)  # exactly zero: masks, not small weights
    if context != 0:
        assert (jac[allowed].abs() > 1e-6).float().mean() > 0.9  # the allowed inputs are really read


def test_pixelcnn_conditionals_read_only_earlier_pixels_in_raster_order():
    model = sharpen(compiled("Bernoulli, conditioner = PixelCNN(layers = 3, channels = 8)",
                             "data x : binary[1, 3, 3]"))
    allowed = expected_dependencies(list(range(9)), None)
    jac = conditional_jacobian(model)
    assert torch.all(jac[~allowed] == 0)
    assert (jac[allowed].abs() > 1e-6).float().mean() > 0.5


def test_rnade_density_from_the_spec_integrates_to_one_on_a_grid():
    model = sharpen(compiled("MixtureOfGaussians(K = 3), conditioner = NADE(hidden = 8)", "data x : real[2]"),
                    factor=1.5)
    side = torch.linspace(-9.0, 9.0, 601)
    grid = torch.cartesian_prod(side, side)
    with torch.no_grad():
        density = model.log_prob({"x": grid}).double().exp()
    cell = float(side[1] - side[0]) ** 2
    assert abs(float(density.sum()) * cell - 1.0) < 1e-2


def markov_binary(n: int, seed: int, flip: float = 0.1) -> np.ndarray:
    """x_0 ~ Bernoulli(1/2), x_t = x_{t-1} flipped with probability `flip`."""
    rng = np.random.default_rng(seed)
    flips = rng.random((n, 6)) < flip
    flips[:, 0] = rng.random(n) < 0.5
    return (np.cumsum(flips, axis=1) % 2).astype(np.int64)


def test_a_short_fit_through_the_runtime_learns_a_markov_chain(tmp_path):
    np.savez(tmp_path / "train.npz", x=markov_binary(2000, seed=0))
    np.savez(tmp_path / "valid.npz", x=markov_binary(2000, seed=1))
    model = dgmdsl.loads("model M {\n data x : binary[6]\n"
                         " x ~ Autoregressive(Bernoulli, conditioner = NADE(hidden = 16))\n}\n").models[0]
    run = model.fit(data=str(tmp_path / "train.npz"), max_steps=400, batch_size=100, lr=2e-2, out=tmp_path / "run",
                    quiet=True, device="cpu")
    after = run.evaluate(data=str(tmp_path / "valid.npz"))["nll_nats"]
    entropy = math.log(2) - 5 * (0.1 * math.log(0.1) + 0.9 * math.log(0.9))  # 2.32 nats
    assert abs(after - entropy) < 0.08  # an independent model would sit at 6 ln 2 = 4.16


def test_made_ensemble_cycles_masks_in_training_and_averages_in_evaluation(tmp_path):
    np.savez(tmp_path / "train.npz", x=markov_binary(200, seed=0))
    model = dgmdsl.loads("model M {\n data x : binary[6]\n x ~ Autoregressive(Bernoulli, "
                         "conditioner = MADE(hidden = [12], masks = 3))\n}\n").models[0]
    run = model.fit(data=str(tmp_path / "train.npz"), max_steps=4, batch_size=50, out=tmp_path / "run",
                    quiet=True, device="cpu")
    density = run.compiled.densities["x"]
    assert density.conditioner.mask_index == 4 % 3  # one step per training log_prob
    assert run.compiled.state_dict()["_extra_state"].tolist() == [1]
    reopened = dgmdsl.open_run(tmp_path / "run", device="cpu")
    assert reopened.compiled.densities["x"].conditioner.mask_index == 1
    batch = {"x": torch.from_numpy(markov_binary(50, seed=3))}
    with torch.no_grad():
        ensemble = density.log_prob_ensemble(batch["x"].float())
        single = density.conditional_log_probs(batch["x"].float(), 0).sum(-1)
    metrics = run.compiled.evaluate(batch)
    assert metrics["nll_nats"] == pytest.approx(float(-ensemble.double().mean()), rel=1e-6)
    assert abs(metrics["nll_nats"] + float(single.double().mean())) > 1e-4  # not the first mask alone
    assert metrics["bits_per_dim"] == pytest.approx(metrics["nll_nats"] / (6 * math.log(2)))


SAMPLING_CASES = [
    ("Bernoulli, conditioner = MADE(hidden = [10], masks = 2), order = reverse", "data x : binary[3]", 2),
    ("Categorical(K = 3), conditioner = NADE(hidden = 6)", "data x : cat(3)[2]", 3),
]


@pytest.mark.parametrize("body, decl, levels", SAMPLING_CASES)
def test_sample_frequencies_match_exact_probabilities(body, decl, levels):
    model = sharpen(compiled(body, decl), factor=2.0)
    dim = model.spec.vars["x"].type.size
    outcomes = torch.tensor(list(itertools.product(range(levels), repeat=dim)))
    with torch.no_grad():
        exact = model.log_prob({"x": outcomes}).double().exp()
    n = 20_000
    draws = model.sample(n, seed=7)["x"]
    assert draws.dtype == torch.long and draws.shape == (n, dim)
    codes = (draws * levels ** torch.arange(dim - 1, -1, -1)).sum(1)
    freq = torch.bincount(codes, minlength=len(outcomes)).double() / n
    bound = 4.5 * torch.sqrt(exact * (1 - exact) / n) + 1e-4
    assert torch.all((freq - exact).abs() < bound)
    assert float(exact.max()) > 1.5 / len(outcomes)  # far from uniform
    again = model.sample(50, seed=3)["x"]
    assert torch.equal(model.sample(50, seed=3)["x"], again)  # seeded
    assert not torch.equal(model.sample(50, seed=4)["x"], again)


def test_pixelcnn_samples_keep_the_image_shape():
    model = compiled("Bernoulli, conditioner = PixelCNN(layers = 2, channels = 4)", "data x : binary[1, 4, 4]")
    draws = model.sample(5, seed=0)["x"]
    assert draws.shape == (5, 1, 4, 4) and set(draws.unique().tolist()) <= {0, 1}


@pytest.mark.parametrize("body, decl, message, line", [
    ("Bernoulli, conditioner = NADE(hidden = 5), context = 2", "data x : binary[6]", "cannot use a context", 4),
    ("Bernoulli, conditioner = PixelCNN(layers = 2, channels = 4), order = reverse", "data x : binary[1, 2, 3]",
     "fix the raster order", 4),
    ("Categorical(K = 4), conditioner = Linear", "data x : cat(5)[3]", "does not match x : cat(5)[3]", 4),
    ("Bernoulli, conditioner = Linear", "data x : cat(3)[3]", "gives the values 0 and 1", 4),
])
def test_specs_the_library_cannot_build_are_located_errors(body, decl, message, line):
    with pytest.raises(DgmError) as error:
        compiled(body, decl)
    text = error.value.render()
    assert message in text and f"<input>:{line}:" in text


def test_dgm_check_rejects_a_conditioner_that_cannot_be_masked(tmp_path, capsys):
    spec = tmp_path / "unet.dgm"
    spec.write_text("model U {\n    data x : binary[1, 4, 4]\n    net g = UNet(channels = [8])\n"
                    "    x ~ Autoregressive(Bernoulli, conditioner = g)\n}\n")
    assert dgm_main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "cannot be masked" in err and f"{spec}:4:" in err
