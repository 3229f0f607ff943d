"""One test per error class: exact line:col and the words the message must hold."""
from pathlib import Path

import pytest

from dgmdsl import DgmError, loads

BAD = Path(__file__).parent / "bad"

# name -> (line, col, words that must appear in the first message)
EXPECTED = {
    "syntax_unexpected_token": (3, 21, ["syntax error", "')'"]),
    "syntax_eof": (4, 1, ["unexpected end of file"]),
    "syntax_bad_char": (3, 22, ["unexpected character", "'$'"]),
    "undefined_name": (3, 16, ["undefined name 'mu'"]),
    "duplicate_declaration": (3, 12, ["'x' is declared twice", "line 2"]),
    "defined_twice": (4, 5, ["'x' is defined twice", "line 3"]),
    "undeclared_target": (3, 5, ["'y' is not declared"]),
    "latent_undefined": (3, 12, ["latent 'z' has no distribution"]),
    "support_mismatch": (3, 9, ["x is binary but Normal is real-valued"]),
    "table_parent": (5, 33, ["table", "'a'", "real"]),
    "shape_mismatch": (3, 16, ["shape mismatch", "[2]", "[3]"]),
    "cycle": (5, 5, ["cycle", "a", "b"]),
    "guide_defines_data": (7, 9, ["guide defines data 'x'", "only latents"]),
    "unknown_distribution": (3, 9, ["unknown distribution 'Bernouli'", "did you mean 'Bernoulli'?"]),
    "unknown_function": (3, 16, ["unknown function 'sqr'", "did you mean 'sqrt'?"]),
    "unknown_layer": (5, 9, ["unknown flow layer 'afine_coupling'", "'affine_coupling'"]),
    "unknown_method": (4, 20, ["unknown method 'exact_nl'", "'exact_nll'"]),
    "unknown_dataset": (4, 18, ["unknown data set 'moon'", "'moons'"]),
    "unknown_fit_option": (4, 11, ["unknown fit option 'epoch'", "'epochs'"]),
    "bad_option_value": (4, 24, ["batch_size", "positive integer", "-1"]),
    "method_not_valid": (4, 20, ["'svi' is not valid", "exact_nll"]),
    "non_affine_drift": (5, 14, ["not affine in x"]),
    "order_not_permutation": (3, 65, ["permutation"]),
    "unknown_type": (2, 14, ["unknown type 'bool'"]),
    "net_width_mismatch": (8, 16, ["shape mismatch", "'dec'", "[3]", "[2]"]),
    "too_deep": (3, 47, ["nested more than"]),
    "infinite_number": (4, 20, ["finite"]),
    "flow_prior_base_guided": (12, 9, ["u is the base of flow prior 'prior'", "the guide is written for z"]),
    "guide_flow_base_in_model": (13, 18, ["base of guide flow 'post'", "e is defined in the model"]),
    "fit_option_wrong_family": (8, 11, ["fit option 'ema' does not apply to a flow model"]),
    "unknown_activation": (4, 40, ["unknown activation 'rleu'", "did you mean 'relu'?"]),
    "bad_net_width": (5, 62, ["MLP.hidden must be a list of positive integers"]),
    "conditioner_bad_activation": (3, 74, ["MADE.act must be an activation name"]),
    "unknown_init": (4, 41, ["unknown initialisation 'kaiming'"]),
    "time_embedding_too_small": (3, 49, ["MLP.time_embedding must be an integer >= 2"]),
    "penalty_form_without_penalty": (8, 61, ["penalty_form has no effect without a gradient penalty"]),
    "momentum_one": (4, 38, ["sgd.momentum must be a number in [0, 1), got 1"]),
    "ema_decay_one": (5, 17, ["fit.ema must be a number in [0, 1), got 1"]),
}


def test_every_bad_file_has_an_expectation():
    names = {p.stem for p in BAD.glob("*.dgm")} - {"many_errors"}
    assert names == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_error_location_and_words(name):
    line, col, words = EXPECTED[name]
    with pytest.raises(DgmError) as info:
        loads((BAD / f"{name}.dgm").read_text(), f"{name}.dgm")
    diag = info.value.diagnostics[0]
    assert (diag.span.line, diag.span.col) == (line, col), diag.message
    for word in words:
        assert word in diag.message, (word, diag.message)
    first = info.value.render().splitlines()[0]
    assert first.startswith(f"{name}.dgm:{line}:{col}: error: ")


def test_all_errors_reported_not_only_first():
    with pytest.raises(DgmError) as info:
        loads((BAD / "many_errors.dgm").read_text(), "m.dgm")
    messages = [d.message for d in info.value.diagnostics]
    assert len(messages) == 3
    assert "undefined name 'a'" in messages[0] and "undefined name 'b'" in messages[1]


def test_error_cap_at_20():
    body = "\n".join(f"    x{i} ~ Normal(undefined{i}, 1)" for i in range(30))
    decls = "\n".join(f"    data x{i} : real" for i in range(30))
    with pytest.raises(DgmError) as info:
        loads(f"model M {{\n{decls}\n{body}\n}}\n")
    assert len(info.value.diagnostics) == 20
    assert info.value.truncated == 10
    assert "10 more" in info.value.render()


def test_caret_under_span():
    with pytest.raises(DgmError) as info:
        loads((BAD / "unknown_distribution.dgm").read_text(), "u.dgm")
    lines = info.value.render().splitlines()
    source, caret = lines[1], lines[2]
    start = caret.index("^")
    assert source[start:start + len("Bernouli")] == "Bernouli"
    assert caret.strip() == "^" + "~" * (len("Bernouli") - 1)


def test_unknown_model_name_is_a_dgm_error():
    prog = loads("model A {\n data x : real\n x ~ Normal(0, 1)\n}\n")
    with pytest.raises(DgmError, match="unknown model 'B'"):
        prog["B"]


@pytest.mark.parametrize("text,words", [
    ("model M {\n data x : real[2]\n latent z : real[2]\n net G = MLP()\n z ~ Normal(0, 1)\n x = G(z)\n}\n",
     "no density and no critic"),
    ("model M {\n data x : real\n x ~ Normal(0, 1)\n guide { z ~ Normal(0, 1) }\n}\n", "'z' is not declared"),
    ("model M {\n data x : real\n param m : real\n x ~ Categorical(probs = uniform)\n}\n", "real but Categorical"),
    ("model M {\n data x : binary[4]\n x ~ Autoregressive(Bernoulli, conditioner = PixelCNN(layers = 2, channels = 4))\n}\n",
     "PixelCNN needs an image-shaped"),
    ("model M {\n data x : real\n x ~ Normal(0, 1)\n fit { method = exact_nll, method = exact_nll }\n}\n", "given twice"),
    ("model M {\n data x : real\n x ~ Normal(0, 1)\n fit { optimizer = adam(lr = 0) }\n}\n", "adam.lr must be a positive"),
    ("model M {\n data x : real\n x ~ Normal(0, 1)\n fit { optimizer = adam(lr = 1e-3, beta2 = 1) }\n}\n",
     "adam.beta2 must be a number in [0, 1), got 1"),
    ("model M {\n data x : real\n x ~ Normal(0, 1)\n fit { optimizer = optimistic_adam(momentum = 0.9) }\n}\n",
     "unknown option of optimistic_adam 'momentum'"),
    ("model M {\n data x : real\n x ~ Normal(0, 1)\n sample { method = langevn(steps = 3, step_size = 0.1) }\n}\n",
     "did you mean 'langevin'"),
    ("model M {\n data x : cat(1)\n x ~ Categorical(probs = table())\n}\n", "K >= 2"),
    ("model M {\n data x : real\n x ~ Normal(0, 1)\n fit { data = samples(Nope, n = 10) }\n}\n", "unknown model 'Nope'"),
])
def test_more_user_errors(text, words):
    with pytest.raises(DgmError) as info:
        loads(text, "t.dgm")
    assert any(words in d.message for d in info.value.diagnostics), [d.message for d in info.value.diagnostics]
