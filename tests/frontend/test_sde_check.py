"""SDE blocks: the drift's affine decomposition a(t)*x + b(t) and diffusion g(t)."""
import math

import pytest

from dgmdsl import DgmError, loads

TEMPLATE = """model M {{
    data x : real[2]
    net s = MLP(hidden = [8])
    sde e {{
{body}
    }}
    x ~ Diffusion(e, score = s)
}}
"""


def sde_of(body: str):
    prog = loads(TEMPLATE.format(body=body))
    return prog["M"].checked.sdes["e"]


def value(text: str, t: float) -> float:
    env = {"t": t, "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "tanh": math.tanh}
    return eval(text.replace("^", "**"), env)  # the strings are sympy-parsable Python expressions


def test_vp_decomposition():
    sde = sde_of("        beta(t) = 0.1 + (20 - 0.1) * t\n        dx = -0.5 * beta(t) * x * dt + sqrt(beta(t)) * dw")
    beta = lambda t: 0.1 + 19.9 * t  # noqa: E731
    for t in (0.0, 0.3, 1.0):
        assert value(sde.a, t) == pytest.approx(-0.5 * beta(t))
        assert value(sde.b, t) == 0
        assert value(sde.g, t) == pytest.approx(math.sqrt(beta(t)))


def test_ve_has_no_drift():
    sde = sde_of("        sigma(t) = 0.01 * (50 / 0.01) ^ t\n        dx = sigma(t) * sqrt(2 * log(50 / 0.01)) * dw")
    assert sde.a == "0" and sde.b == "0"
    assert value(sde.g, 0.5) == pytest.approx(0.01 * 5000 ** 0.5 * math.sqrt(2 * math.log(5000)))


def test_affine_with_offset_and_division():
    sde = sde_of("        dx = (2 * t - x) / 3 * dt + 0.5 * dw")
    assert value(sde.a, 0.7) == pytest.approx(-1 / 3)
    assert value(sde.b, 0.7) == pytest.approx(1.4 / 3)


def test_sympy_settles_what_the_fast_pass_cannot():
    sde = sde_of("        dx = -x * x / x * dt + dw")
    assert value(sde.a, 0.2) == pytest.approx(-1.0)


@pytest.mark.parametrize("drift,words", [
    ("-x * x * dt + dw", "multiplied by itself"),
    ("-exp(x) * dt + dw", "exp"),
    ("1 / x * dt + dw", "denominator"),
    ("x ^ 2 * dt + dw", "power"),
])
def test_non_affine_is_a_located_error(drift, words):
    with pytest.raises(DgmError) as info:
        sde_of(f"        dx = {drift}")
    d = info.value.diagnostics[0]
    assert "not affine in x" in d.message and words in d.message and d.span.line == 5


def test_diffusion_must_not_depend_on_state():
    with pytest.raises(DgmError, match="must not depend on the state"):
        sde_of("        dx = -x * dt + x * dw")


def test_missing_state_equation():
    with pytest.raises(DgmError, match="exactly one state equation"):
        sde_of("        beta(t) = t")


def test_term_without_dt_or_dw():
    with pytest.raises(DgmError, match="multiplied by dt or dw"):
        sde_of("        dx = -x * dt + dw + 1")
