"""`MLP(init = he)`: He et al. (2015) weights, reached from a spec."""
import math

import pytest
import torch
from torch import nn

import dgmdsl
from dgmdsl.nn.mlp import MLP, he_init_
from dgmdsl.runtime.api import compile_model


def _linears(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def test_he_weights_have_variance_two_over_fan_in_and_one_at_the_output():
    torch.manual_seed(0)
    net = MLP(64, 8, [512, 512], init="he")
    hidden, last = _linears(net)[:-1], _linears(net)[-1]
    for layer in hidden:
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / layer.in_features), rel=0.02)
        assert torch.count_nonzero(layer.bias) == 0
    assert last.weight.std().item() == pytest.approx(math.sqrt(1 / 512), rel=0.05)
    # torch's default (uniform, bound 1/sqrt(fan-in)) is sqrt(6) times narrower
    default = MLP(64, 8, [512, 512])
    assert _linears(default)[1].weight.std().item() == pytest.approx(1 / math.sqrt(3 * 512), rel=0.02)


def test_he_keeps_the_second_moment_through_relu_layers():
    # the point of the 2 / fan-in variance: with unit inputs every hidden pre-activation has
    # E[h^2] = 2 (a ReLU halves it, the next layer doubles it), layer after layer
    torch.manual_seed(1)
    net = MLP(256, 256, [256, 256, 256], init="he")
    x = torch.randn(4096, 256)
    h, moments = x, []
    for module in net:
        h = module(h)
        if isinstance(module, nn.Linear):
            moments.append(h.pow(2).mean().item())
    assert all(m == pytest.approx(2.0, rel=0.1) for m in moments[:-1]), moments
    assert moments[-1] == pytest.approx(1.0, rel=0.1), moments  # gain 1 at the output


def test_he_init_is_in_place_and_unknown_init_is_refused():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    assert he_init_(net) is net
    with pytest.raises(ValueError, match="unknown initialisation"):
        MLP(2, 2, [4], init="xavier")


SPEC = """model Small {
    data   x : real[2]
    latent z : real[16]
    net    G = MLP(hidden = [256, 256], init = %s)
    critic D = MLP(hidden = [256, 256])
    z ~ Normal(0, 1)
    x = G(z)
    fit { method = adversarial(loss = wgan_gp, critic_steps = 5, penalty = 10),
          data = eight_gaussians(n = 64, seed = 0) }
}
"""


@pytest.mark.parametrize("init, first_std", [("he", math.sqrt(2 / 16)), ("default", 1 / math.sqrt(3 * 16))])
def test_spec_init_option_reaches_the_net(init, first_std):
    torch.manual_seed(0)
    compiled = compile_model(dgmdsl.loads(SPEC % init)["Small"])
    generator = [m for name, m in compiled.named_modules() if name.endswith("G")]
    first = _linears(generator[0])[0]
    assert first.weight.std().item() == pytest.approx(first_std, rel=0.1)
    critic_first = _linears(compiled.critic)[0]  # the critic keeps torch's default
    assert critic_first.weight.abs().max().item() <= 1 / math.sqrt(2) + 1e-6
