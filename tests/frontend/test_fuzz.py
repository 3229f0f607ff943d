"""Property test: mutated reference specs only ever produce diagnostics, never another
exception, and each answers well under a second without unrolling declared sizes."""
import time
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dgmdsl import DgmError, loads
from tests.conftest import SHARED_SPECS

TEXTS = [p.read_text() for p in SHARED_SPECS]
NASTY_NUMBERS = ["0", "-1", "99999999999", "1e309", "1e-400", "0.0"]


def _tokens(text):
    import re
    return re.findall(r"\s+|[A-Za-z_][A-Za-z0-9_]*|\d+\.?\d*(?:[eE][+-]?\d+)?|.", text)


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(TEXTS))
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "lines", "bytes", "unicode", "truncate",
                                 "nest", "numbers", "repeat"]))
    toks = _tokens(text)
    if kind in ("delete", "duplicate", "swap") and len(toks) > 2:
        i = draw(st.integers(0, len(toks) - 1))
        j = draw(st.integers(0, len(toks) - 1))
        if kind == "delete":
            del toks[i]
        elif kind == "duplicate":
            toks.insert(i, toks[i])
        else:
            toks[i], toks[j] = toks[j], toks[i]
        return "".join(toks)
    if kind == "lines":
        lines = text.splitlines()
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["del", "dup", "swap"]))
        j = draw(st.integers(0, len(lines) - 1))
        if op == "del":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        else:
            lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    if kind == "bytes":
        i = draw(st.integers(0, len(text)))
        junk = draw(st.binary(min_size=1, max_size=8)).decode("latin-1")
        return text[:i] + junk + text[i:]
    if kind == "unicode":
        i = draw(st.integers(0, len(text)))
        return text[:i] + draw(st.text(min_size=1, max_size=5)) + text[i:]
    if kind == "truncate":
        return text[:draw(st.integers(0, len(text)))]
    if kind == "nest":
        depth = draw(st.integers(30, 3000))
        i = draw(st.integers(0, len(text)))
        return text[:i] + "(" * depth + "1" + ")" * depth + text[i:]
    if kind == "repeat":
        return text.replace("repeat 4", "repeat 99999999999").replace("[784]", "[99999999999]")
    nums = [k for k, t in enumerate(toks) if t[:1].isdigit()]
    for k in nums:
        if draw(st.booleans()):
            toks[k] = draw(st.sampled_from(NASTY_NUMBERS))
    return "".join(toks)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_only_give_diagnostics(text):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        loads(text, "mutant.dgm")
    except DgmError as err:
        assert err.diagnostics, "a DgmError must carry diagnostics"
        for d in err.diagnostics:
            assert d.message
        err.render()
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 50 * 2 ** 20


def test_thousands_of_nested_parentheses():
    text = TEXTS[0].replace("Normal(0, 1)", "Normal(" + "(" * 5000 + "0" + ")" * 5000 + ", 1)", 1)
    try:
        loads(text)
    except DgmError as err:
        assert "nested" in err.diagnostics[0].message


def test_long_operator_chain():
    text = "model M {\n data x : real\n x ~ Normal(" + " + ".join(["1"] * 5000) + ", 1)\n}\n"
    try:
        loads(text)
    except DgmError as err:
        assert "operators" in err.diagnostics[0].message
