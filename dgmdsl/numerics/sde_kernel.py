"""Gaussian perturbation kernels of affine SDEs and the continuous-time DSM loss.

The SDE is dx = (a(t) x + b(t)) dt + g(t) dw on t in [0, 1], with a, b, g sympy
expressions in one symbol. Then q(x_t | x_0) = N(m(t) x_0 + c(t), v(t) I) where
m' = a m, c' = a c + b, v' = 2 a v + g^2 and m(0) = 1, c(0) = v(0) = 0.
"""
from __future__ import annotations

import functools
import math
import operator
from typing import Callable

import sympy as sp
import torch
from sympy.integrals.manualintegrate import manualintegrate
from sympy.integrals.risch import risch_integrate
from torchdiffeq import odeint

__all__ = ["GaussianKernel", "derive_kernel", "dsm_loss", "sympy_to_torch"]

TimeFn = Callable[[torch.Tensor], torch.Tensor]

_UNARY: dict[type, Callable[[torch.Tensor], torch.Tensor]] = {
    sp.exp: torch.exp, sp.log: torch.log, sp.sin: torch.sin, sp.cos: torch.cos,
    sp.tan: torch.tan, sp.sinh: torch.sinh, sp.cosh: torch.cosh, sp.tanh: torch.tanh,
    sp.asin: torch.asin, sp.acos: torch.acos, sp.atan: torch.atan,
    sp.erf: torch.special.erf, sp.erfc: torch.special.erfc, sp.Abs: torch.abs,
    sp.sign: torch.sign,
}


def sympy_to_torch(expr: sp.Expr, symbol: sp.Symbol) -> TimeFn:
    """Compile a sympy expression in `symbol` to an elementwise torch function of t."""
    compiled = _compile(sp.sympify(expr), symbol)
    if isinstance(compiled, float):
        return lambda t: torch.full_like(t, compiled)
    return compiled


def _compile(expr: sp.Expr, symbol: sp.Symbol) -> float | TimeFn:
    """A float for constant subexpressions (folded once), else a function of t."""
    if symbol not in expr.free_symbols:
        if expr.free_symbols:
            raise ValueError(f"{expr} depends on {expr.free_symbols}, not only on {symbol}")
        try:
            value = complex(expr.evalf())
        except TypeError:  # infinities and the like
            raise ValueError(f"{expr} is not a finite number") from None
        if value.imag != 0.0:
            raise ValueError(f"{expr} is not real")
        return value.real
    if expr == symbol:
        return lambda t: t
    args = [_compile(arg, symbol) for arg in expr.args]
    if isinstance(expr, (sp.Add, sp.Mul)):
        combine = operator.add if isinstance(expr, sp.Add) else operator.mul
        constants = [a for a in args if isinstance(a, float)]
        fns = [a for a in args if not isinstance(a, float)]
        if constants:
            fns.append(functools.reduce(combine, constants))
        return lambda t: functools.reduce(combine, (f if isinstance(f, float) else f(t) for f in fns))
    if isinstance(expr, sp.Pow):
        base, power = args
        if isinstance(power, float):
            return lambda t: torch.pow(base(t), power)
        if isinstance(base, float):
            return lambda t: torch.pow(base, power(t))
        return lambda t: torch.pow(base(t), power(t))
    if expr.func in _UNARY:
        func, (inner,) = _UNARY[expr.func], args
        return lambda t: func(inner(t))
    raise NotImplementedError(f"no torch translation for {expr.func.__name__} in {expr}")


def _as_float64(fn: TimeFn) -> TimeFn:
    """Evaluate in float64 (cancellations like 1 - m^2 near t = 0), return in t's dtype."""
    def wrapped(t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
        return fn(t.to(torch.float64)).to(dtype)
    return wrapped


class GaussianKernel:
    """q(x_t | x_0) = N(mean_coef(t) x_0 + mean_shift(t), var(t) I) for t in [0, 1].

    Time arguments are tensors (any shape, usually [B]); per-example values are
    broadcast against x along its leading (batch) dimension.
    """

    def __init__(self, log_mean_coef: TimeFn, mean_shift: TimeFn, var: TimeFn,
                 drift_coef: TimeFn, drift_shift: TimeFn, diffusion: TimeFn,
                 is_closed_form: bool, source: str) -> None:
        self._log_mean_coef = _as_float64(log_mean_coef)
        self._mean_shift = _as_float64(mean_shift)
        self._var = _as_float64(var)
        self._drift_coef = _as_float64(drift_coef)
        self._drift_shift = _as_float64(drift_shift)
        self._diffusion = _as_float64(diffusion)
        self.is_closed_form = is_closed_form
        self.source = source

    def mean_coef(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self._log_mean_coef(t))

    def mean_shift(self, t: torch.Tensor) -> torch.Tensor:
        return self._mean_shift(t)

    def var(self, t: torch.Tensor) -> torch.Tensor:
        # interpolation or round-off may dip a hair below zero at t = 0
        return self._var(t).clamp_min(0.0)

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return self.var(t).sqrt()

    def drift_coef(self, t: torch.Tensor) -> torch.Tensor:
        """a(t) in f(x, t) = a(t) x + b(t)."""
        return self._drift_coef(t)

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _time_like(t, x)
        return _per_example(self._drift_coef(t), x) * x + _per_example(self._drift_shift(t), x)

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return self._diffusion(t)

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of x_t given x0; std has shape [B, 1, ...] to broadcast against x0."""
        t = _time_like(t, x0)
        mean = _per_example(self.mean_coef(t), x0) * x0 + _per_example(self.mean_shift(t), x0)
        return mean, _per_example(self.std(t), x0)

    def _prior_params(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one = torch.ones((), dtype=like.dtype, device=like.device)
        return self.mean_shift(one), self.std(one)

    def prior_sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                     device: torch.device | str | None = None,
                     dtype: torch.dtype | None = None) -> torch.Tensor:
        """Draw from N(c(1), v(1) I).

        This drops m(1) x_0 from the true marginal at t = 1: exact when m(1) ~ 0
        (VP, sub-VP) or sqrt(v(1)) >> the data scale (VE); for an SDE where
        neither holds the prior is misspecified and samples are biased.
        """
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        mean, std = self._prior_params(z)
        return mean + std * z

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; c(1), v(1) I), summed over all but the batch dimension."""
        mean, std = self._prior_params(x)
        z = (x - mean) / std
        per_dim = -0.5 * z.pow(2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
        return per_dim.flatten(1).sum(dim=1)

    def __repr__(self) -> str:
        return f"GaussianKernel({self.source})"


def _time_like(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t, dtype=x.dtype, device=x.device)


def _per_example(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape per-example [B] values to [B, 1, ..., 1]; scalars pass through."""
    if values.dim() == 0:
        return values
    return values.reshape(values.shape[0], *([1] * (x.dim() - 1)))


# ---------------------------------------------------------------- derivation

def _antiderivative(integrand: sp.Expr, s: sp.Symbol) -> sp.Expr | None:
    """Elementary antiderivative, or None. Risch first (fast, decisive), then manual rules."""
    if integrand == 0:
        return sp.Integer(0)
    try:
        result = risch_integrate(integrand, s)
        if not result.has(sp.Integral):
            return result
    except (NotImplementedError, ValueError):
        pass
    # sympy.integrate's heuristics can take minutes on hopeless integrands; manual rules cannot
    result = manualintegrate(integrand, s)
    return None if result.has(sp.Integral) else result


def _definite(integrand: sp.Expr, s: sp.Symbol, tau: sp.Symbol) -> sp.Expr | None:
    antiderivative = _antiderivative(integrand, s)
    if antiderivative is None:
        return None
    at_zero = antiderivative.subs(s, 0)
    if at_zero.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        return None
    return antiderivative.subs(s, tau) - at_zero


def _closed_form(a: sp.Expr, b: sp.Expr, g: sp.Expr, s: sp.Symbol,
                 tau: sp.Symbol) -> tuple[sp.Expr, sp.Expr, sp.Expr] | None:
    """(log m, c, v) as expressions in tau, or None when an integral is not elementary."""
    log_m = _definite(a, s, tau)
    if log_m is None:
        return None
    m_at_s = sp.exp(log_m.subs(tau, s))
    shift = sp.Integer(0) if b == 0 else _definite(sp.expand(b / m_at_s), s, tau)
    spread = _definite(sp.expand(g**2 / m_at_s**2), s, tau)
    if shift is None or spread is None:
        return None
    m = sp.exp(log_m)
    return log_m, m * shift, m**2 * spread


def _finite_on_unit_interval(fns: list[TimeFn]) -> bool:
    grid = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    return all(bool(torch.isfinite(fn(grid)).all()) for fn in fns)


def _hermite(grid: torch.Tensor, values: torch.Tensor, slopes: torch.Tensor) -> TimeFn:
    """Cubic Hermite interpolant on a uniform grid; t is clamped into the grid's range."""
    step = float(grid[1] - grid[0])
    start, stop = float(grid[0]), float(grid[-1])
    tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def interpolate(t: torch.Tensor) -> torch.Tensor:
        if t.device not in tables:  # copy the table to each device once
            tables[t.device] = (grid.to(t.device), values.to(t.device), slopes.to(t.device))
        knots, y, dy = tables[t.device]
        t = t.clamp(start, stop)
        idx = ((t - start) / step).floor().long().clamp(0, len(knots) - 2)
        u = (t - knots[idx]) / step
        h00, h10 = (1 + 2 * u) * (1 - u) ** 2, u * (1 - u) ** 2
        h01, h11 = u**2 * (3 - 2 * u), u**2 * (u - 1)
        return h00 * y[idx] + h10 * step * dy[idx] + h01 * y[idx + 1] + h11 * step * dy[idx + 1]

    return interpolate


def _numeric(a_fn: TimeFn, b_fn: TimeFn, g_fn: TimeFn, grid_size: int,
             rtol: float) -> tuple[TimeFn, TimeFn, TimeFn]:
    """Solve the (log m, c, v) ODEs once on a dense grid; Hermite-interpolate with exact slopes."""
    def rhs(t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        a = a_fn(t)
        log_m_slope = a
        c_slope = a * state[..., 1] + b_fn(t)
        v_slope = 2 * a * state[..., 2] + g_fn(t) ** 2
        return torch.stack([log_m_slope, c_slope, v_slope], dim=-1)

    grid = torch.linspace(0.0, 1.0, grid_size, dtype=torch.float64)
    start = torch.zeros(3, dtype=torch.float64)
    states = odeint(rhs, start, grid, rtol=rtol, atol=rtol * 1e-2, method="dopri5")
    slopes = rhs(grid, states)
    return tuple(_hermite(grid, states[:, k], slopes[:, k]) for k in range(3))  # type: ignore


def derive_kernel(a: sp.Expr, b: sp.Expr, g: sp.Expr, t: sp.Symbol, *,
                  force_numeric: bool = False, grid_size: int = 2001,
                  rtol: float = 1e-8) -> GaussianKernel:
    """Perturbation kernel of dx = (a(t) x + b(t)) dt + g(t) dw.

    Closed form when sympy finds elementary integrals for log m = int_0^t a,
    c = m int_0^t b / m and v = m^2 int_0^t g^2 / m^2 (floats are made rational
    first so that e.g. VP exponents cancel exactly); otherwise the ODEs are
    solved numerically once with torchdiffeq on `grid_size` points of [0, 1].
    """
    a, b, g = (sp.sympify(e) for e in (a, b, g))
    for name, expr in (("a", a), ("b", b), ("g", g)):
        if expr.free_symbols - {t}:
            raise ValueError(f"{name}(t) = {expr} depends on {expr.free_symbols - {t}}")
    a_fn, b_fn, g_fn = (sympy_to_torch(e, t) for e in (a, b, g))
    if not force_numeric:
        kernel = _try_closed_form(a, b, g, t, (a_fn, b_fn, g_fn))
        if kernel is not None:
            return kernel
    log_m_fn, c_fn, v_fn = _numeric(a_fn, b_fn, g_fn, grid_size, rtol)
    source = (f"numeric: torchdiffeq dopri5 (rtol {rtol:g}) for m' = a m, c' = a c + b, "
              f"v' = 2 a v + g^2 on {grid_size} points of [0, 1], cubic Hermite interpolation; "
              f"a = {a}, b = {b}, g = {g}")
    return GaussianKernel(log_m_fn, c_fn, v_fn, a_fn, b_fn, g_fn, False, source)


def _try_closed_form(a: sp.Expr, b: sp.Expr, g: sp.Expr, t: sp.Symbol,
                     coefficient_fns: tuple[TimeFn, TimeFn, TimeFn]) -> GaussianKernel | None:
    s, tau = sp.Symbol("s", positive=True), sp.Symbol("t", positive=True)
    rational = [sp.nsimplify(e.subs(t, s), rational=True) for e in (a, b, g)]
    exprs = _closed_form(*rational, s, tau)
    if exprs is None:
        return None
    try:
        fns = [sympy_to_torch(e, tau) for e in exprs]
    except (NotImplementedError, ValueError):
        return None
    if not _finite_on_unit_interval(fns):
        return None
    # six significant digits keep `dgm explain` readable (exact rationals can be 30 digits long)
    log_m, c, v = (sp.N(e, 6) for e in exprs)
    source = f"closed form: m(t) = exp({log_m}), c(t) = {c}, v(t) = {v}"
    return GaussianKernel(*fns, *coefficient_fns, True, source)


# ---------------------------------------------------------------- training loss

def dsm_loss(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor,
             kernel: GaussianKernel, weighting: str = "variance", eps: float = 1e-5,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoising score matching, t ~ U[eps, 1], mean over the batch of ½ λ(t) ||s + z / std||².

    weighting "variance": λ = std² (so the term is ½ ||std s + z||²);
    "likelihood": λ = g(t)² (Song et al. 2021, bounds the NLL).
    score_fn(x_t, t) receives t of shape [B] in [eps, 1].
    """
    if weighting not in ("variance", "likelihood"):
        raise ValueError(f"weighting must be 'variance' or 'likelihood', not {weighting!r}")
    batch = x0.shape[0]
    t = eps + (1.0 - eps) * torch.rand(batch, generator=generator, device=x0.device, dtype=x0.dtype)
    z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    mean, std = kernel.marginal_prob(x0, t)
    score = score_fn(mean + std * z, t)
    if weighting == "variance":
        residual = std * score + z
    else:
        residual = _per_example(kernel.diffusion(t), x0) * (score + z / std)
    return 0.5 * residual.pow(2).flatten(1).sum(dim=1).mean()
