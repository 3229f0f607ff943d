"""VQ-VAE (LANGUAGE.md §5.3): `k ~ Categorical(probs = uniform)` with the deterministic
guide `k = nearest(enc(x), codebook)`.

The encoder output is reshaped to [n, D] for `k : cat(K)[n]` and `codebook : real[K, D]`;
each row snaps to its nearest code and the decoder reads the codes with the
straight-through gradient (forward: the code; backward: the identity to the encoder).
q(k | x) is a point mass and p(k) uniform, so KL(q || p) = n log K for every x: the bound
-ELBO = reconstruction NLL + n log K is reported with that constant named as such.
With `codebook = ema(decay)` the codebook is a running mean of its assigned encodings
(no gradient); with `codebook = loss` it is learned from the codebook loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..frontend import ast as A
from ..frontend.values import CallValue, Sym
from ..ir import ModelIR
from .base import CompiledModel, seeded
from .distributions import compile_distribution
from .expressions import build_net
from .latent import ConstExprCompiler

__all__ = ["VQVAEModel", "VQTerms"]

QUANTIZED = "__quantized__"  # env slot of codebook[k] (straight-through while training)
_INIT_ROWS = 1024
_LAPLACE = 1e-5


@dataclass
class VQTerms:
    """Per-example losses of one batch, and what the EMA update needs."""

    reconstruction: torch.Tensor  # -log p(x | codes) [B]
    codebook: torch.Tensor        # |sg(z_e) - e|^2 summed over the latent [B]
    commitment: torch.Tensor      # |z_e - sg(e)|^2 summed over the latent [B]
    encodings: torch.Tensor       # z_e, detached [B, *n, D]
    codes: torch.Tensor           # k [B, *n]


class _VQCompiler(ConstExprCompiler):
    """Reads `codebook[k]` from the quantized slot, flattened where a net consumes it."""

    def __init__(self, *args, codebook: str, latent: str) -> None:
        super().__init__(*args)
        self.codebook, self.latent = codebook, latent

    def _is_lookup(self, expr) -> bool:
        return (isinstance(expr, A.Index) and A.call_name(expr.base) == self.codebook
                and len(expr.items) == 1 and A.call_name(expr.items[0]) == self.latent)

    def compile(self, expr, target_shape, key, k=None):
        if self._is_lookup(expr):
            return lambda env: env[QUANTIZED]
        if isinstance(expr, A.Call) and A.call_name(expr) in self.nets and len(expr.args) == 1 \
                and self._is_lookup(expr.args[0].value):
            net, out_shape = self.nets[A.call_name(expr)], tuple(target_shape) + ((k,) if k else ())
            event_dims = len(self.model.vars[self.latent].type.shape) + 1

            def call(env):
                out = net(env[QUANTIZED].flatten(-event_dims))
                return out.reshape(*out.shape[:-1], *out_shape) if out_shape else out.squeeze(-1)
            return call
        return super().compile(expr, target_shape, key, k)


class VQVAEModel(CompiledModel):
    family = "vq"
    has_density = False

    def __init__(self, ir: ModelIR) -> None:
        super().__init__(ir)
        spec = self.spec
        latent, encoder_expr, codebook = _vq_statement(spec)
        self.latent, self.codebook_name = latent.name, codebook.name
        self.code_shape, self.K = latent.type.shape, latent.type.k
        self.D = codebook.type.shape[-1]
        self.params = nn.ParameterDict({p.name: nn.Parameter(0.5 * torch.randn(p.type.shape))
                                        for p in spec.params})
        self.nets = nn.ModuleDict({n.name: build_net(n) for n in spec.nets.values() if n.kind == "net"})
        self.pieces = nn.ModuleDict()
        comp = _VQCompiler(spec, self.params, self.nets, self.pieces, codebook=self.codebook_name,
                           latent=self.latent)
        self.encoder = comp.compile(encoder_expr, (*self.code_shape, self.D), f"guide_{self.latent}")
        self.order = [n for n in ir.topological_vars() if n != self.latent]
        self.conditionals, self.values = {}, {}
        for name in self.order:
            var = spec.vars[name]
            if isinstance(var.stmt, A.SampleStmt):
                self.conditionals[name] = compile_distribution(comp, var, var.stmt.expr, name)
            elif isinstance(var.stmt, A.AssignStmt):
                self.values[name] = comp.compile(var.stmt.expr, var.type.shape, name)
        self.ema_decay = _ema_decay(spec.method.options.get("codebook") if spec.method else None)
        if self.ema_decay is not None:
            self.codebook.requires_grad_(False)
            self.register_buffer("ema_count", torch.ones(self.K))
            self.register_buffer("ema_sum", self.codebook.detach().clone())

    @property
    def codebook(self) -> nn.Parameter:
        return self.params[self.codebook_name]

    def inputs(self, batch: dict) -> dict:
        dtype = torch.get_default_dtype()
        return {k: v.long() if self.spec.vars[k].type.base in ("cat", "ordinal") else v.to(dtype)
                for k, v in batch.items()}

    # ---- quantization and losses -------------------------------------------------------
    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean) for each row [..., D] of z_e."""
        cb = self.codebook
        dist = z_e.pow(2).sum(-1, keepdim=True) - 2 * z_e @ cb.t() + cb.pow(2).sum(-1)
        return dist.argmin(-1)

    def vq_terms(self, batch: dict) -> VQTerms:
        env = self.inputs(batch)
        z_e = self.encoder(env)
        codes = self.nearest(z_e.detach())
        z_q = F.embedding(codes, self.codebook)
        env[self.latent] = codes
        env[QUANTIZED] = z_e + (z_q - z_e).detach()  # straight-through
        event = tuple(range(1, z_e.dim()))
        return VQTerms(-self._log_likelihood(env), (z_q - z_e.detach()).pow(2).sum(event),
                       (z_e - z_q.detach()).pow(2).sum(event), z_e.detach(), codes)

    def _log_likelihood(self, env: dict) -> torch.Tensor:
        total = 0.0
        for name in self.order:
            if name in self.values:
                env[name] = self.values[name](env)
            elif name in self.conditionals and self.spec.vars[name].kind == "data":
                total = total + self.conditionals[name](env).log_prob(env[name])
        return total

    @torch.no_grad()
    def ema_update(self, encodings: torch.Tensor, codes: torch.Tensor, decay: float) -> None:
        """Move each code to the running mean of the encodings assigned to it (Laplace-smoothed counts)."""
        flat_codes, flat_z = codes.reshape(-1), encodings.reshape(-1, self.D)
        counts = torch.bincount(flat_codes, minlength=self.K).to(flat_z.dtype)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, flat_codes, flat_z)
        self.ema_count.lerp_(counts, 1 - decay)
        self.ema_sum.lerp_(sums, 1 - decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + _LAPLACE) / (total + self.K * _LAPLACE) * total
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(-1))

    @torch.no_grad()
    def initialize(self, data: dict[str, torch.Tensor]) -> None:
        """Codes start at encodings of random training rows, so none starts unused far from the data."""
        n = len(next(iter(data.values())))
        rows = torch.randperm(n)[:_INIT_ROWS]
        batch = {k: v[rows].to(self.device) for k, v in data.items() if k in self.spec.vars}
        pool = self.encoder(self.inputs(batch)).reshape(-1, self.D)
        pick = pool[torch.randint(len(pool), (self.K,), device=pool.device)]
        self.codebook.copy_(pick + 1e-3 * torch.randn_like(pick))
        if self.ema_decay is not None:
            self.ema_count.fill_(1.0)
            self.ema_sum.copy_(self.codebook)

    # ---- evaluation and sampling ---------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, batch: dict, batch_size: int = 1000, draws=None, **options) -> dict:
        """Reconstruction NLL (nats per example), the constant KL n log K, their sum (a bound
        on the NLL), and codebook usage: perplexity of the code histogram and codes used."""
        n = len(next(iter(batch.values())))
        recon, counts = [], torch.zeros(self.K, device=self.device)
        for start in range(0, n, batch_size):
            terms = self.vq_terms({k: v[start:start + batch_size] for k, v in batch.items()})
            recon.append(terms.reconstruction.double())
            counts += torch.bincount(terms.codes.reshape(-1), minlength=self.K)
        recon = torch.cat(recon)
        usage = counts / counts.sum()
        entropy = -(usage[usage > 0] * usage[usage > 0].log()).sum()
        kl = math.prod(self.code_shape) * math.log(self.K)
        bound = float(recon.mean()) + kl
        dims = self.observed_dims()
        return {"reconstruction_nats": float(recon.mean()),
                "reconstruction_stderr": float(recon.std() / math.sqrt(len(recon))) if len(recon) > 1 else 0.0,
                "kl_nats": kl, "kl_kind": "constant n log K (uniform prior, point-mass posterior)",
                "nll_bound_nats": bound, "bits_per_dim": bound / (dims * math.log(2)) if dims else float("nan"),
                "perplexity": float(entropy.exp()), "codes_used": int((counts > 0).sum())}

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, covariates: dict | None = None) -> dict[str, torch.Tensor]:
        """Codes from the uniform prior, then the data given them (no learned prior: samples are rough)."""
        env = self.inputs(covariates) if covariates else {}
        with seeded(seed):
            codes = torch.randint(self.K, (n, *self.code_shape), device=self.device)
            env[self.latent] = codes
            env[QUANTIZED] = F.embedding(codes, self.codebook)
            for name in self.order:
                if name in self.values:
                    env[name] = self.values[name](env)
                elif name in self.conditionals and self.spec.vars[name].kind != "param":
                    dist = self.conditionals[name](env)
                    value = dist.sample((n,) if len(dist.batch_shape) == 0 else ())
                    env[name] = value.long() if self.spec.vars[name].type.discrete else value
        return {k: v for k, v in env.items() if k in self.spec.vars and self.spec.vars[k].kind != "param"}


def _vq_statement(spec):
    """(the latent, the encoder expression, the codebook) of the one `k = nearest(enc, codebook)` guide."""
    found = [v for v in spec.latents if isinstance(v.guide_stmt, A.AssignStmt)
             and A.call_name(v.guide_stmt.expr) == "nearest"]
    others = [v.name for v in spec.latents if v not in found]
    if len(found) != 1 or others:
        raise NotImplementedError("a VQ model here has exactly one latent, defined by `k = nearest(enc(x), codebook)`"
                                  + (f"; {', '.join(others)} would need SVI" if others else ""))
    latent = found[0]
    prior = latent.stmt.expr
    if not any(isinstance(a.value, A.Name) and a.value.id == "uniform" for a in prior.args):
        raise NotImplementedError(f"{latent.name} needs the uniform prior `Categorical(probs = uniform)` "
                                  "(the VQ objective does not train a prior)")
    encoder, book = (a.value for a in latent.guide_stmt.expr.args)
    codebook = spec.vars[book.id]
    if len(codebook.type.shape) != 2 or codebook.type.shape[0] != latent.type.k:
        raise NotImplementedError(f"codebook {codebook.name} : {codebook.type} must be real[{latent.type.k}, D]")
    return latent, encoder, codebook


def _ema_decay(option) -> float | None:
    """The EMA decay of `codebook = ema(decay)` (the default), or None for `codebook = loss`."""
    if isinstance(option, Sym) and option.name == "loss":
        return None
    if isinstance(option, CallValue):
        values = {**dict(zip(("decay",), option.args)), **dict(option.kwargs)}
        return float(values.get("decay", 0.99))
    return 0.99
