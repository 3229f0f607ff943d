"""Adversarial training of implicit generators (LANGUAGE.md §5.7; method `adversarial`).

`adversarial(loss = ..., critic_steps = k, penalty = lambda, clip = c, penalty_form = f)`.
The losses, the gradient penalty and weight clipping are `dgmdsl.numerics.adversarial`;
here is the schedule. One step of the shared loop (what `--max-steps` counts) is one generator
update preceded by k critic updates. The loop hands each step one batch of k × B rows
(B = the batch size) from its seeded per-epoch order, split into k critic batches of B
rows: every critic update sees fresh data, an epoch is one pass of the critic over the
data, and a resumed run sees exactly the batches of an uninterrupted one. Each critic
update draws its own fake batch; the generator update draws a fresh one (BiGAN's
encoder side reuses the last critic batch).

Generator (with the encoder) and critic have separate optimizers: `optimizer` and
`critic_optimizer` of the fit block, the critic falling back to the generator's. Where
the fit block names none, each loss gets a default of its own (DEFAULT_OPTIMIZERS):
Adam(DEFAULT_LR, betas 0, 0.9) for `wgan_gp`, RMSprop(5e-5) for `wgan` (Arjovsky et al.
2017), and Adam(DEFAULT_LR, betas 0.5, 0.9) otherwise. For `wgan_gp` this departs from
the paper's Adam(1e-4, betas 0.5, 0.9) (Gulrajani et al. 2017) on measured evidence: with
the paper's optimizer specs/wgan_gp.dgm stays a blur over grid_25_gaussians (2 of 25
modes after 20000 updates), with betas (0, 0.9) at 1e-4 it collapses onto single modes,
and at 1e-3 with betas (0, 0.9) it converges onto the grid (benchmarks/results/
gan-wgan_gp-optimizer-probe.log; momentum in a two-player game rotates around the
equilibrium, Gidel et al. 2019). The implicit family's default learning rate is None,
meaning "not set": `--lr` or an optimizer's `lr` replaces the loss's default step.

The gradient penalty is one-sided unless `penalty_form = two_sided` asks for the paper's:
at penalty 10 the two-sided form makes a critic ranked the wrong way round a local
optimum (every flat critic costs the full penalty), and on grid_25_gaussians that trap,
not the optimizer, decided whether a run locked on (docs/decisions.md, "Gradient penalty").

Over torch.distributed (`--nproc`, torchrun) each player's loss runs as the forward of
its own DistributedDataParallel wrapper, which registers that player's modules alone, so
a backward averages exactly that player's gradients over the processes. Each process
takes 1/W of every batch, as the loop shards it, and its rows of the global batch's
noise and penalty weights (ImplicitModel.generate's `share`): W processes draw what one
process draws for the same global batch, and their random streams stay in step.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..numerics.adversarial import AdversarialLoss, clip_weights_, gradient_penalty, make_loss
from ..runtime.errors import RuntimeUserError
from ..runtime.loop import LoopConfig, run_loop
from .base import Engine, TrainSettings, make_optimizer, per_process_batch

__all__ = ["Adversarial", "CriticDiverged", "CHECK_EVERY", "DEFAULT_LOSS", "DEFAULT_LR", "EXPLODING_CRITIC_LOSS",
           "DEFAULT_OPTIMIZERS", "default_optimizer", "loss_from_options"]

DEFAULT_LOSS = "non_saturating"
# the runtime's usual step: at 1e-4 the non-saturating GAN of specs/gan.dgm stayed on one
# mode for 16k updates, at 1e-3 it covered all eight (benchmarks/gan.py)
DEFAULT_LR = 1e-3
# (loss name) -> its optimizer where it differs from Adam(DEFAULT_LR, betas 0.5, 0.9)
DEFAULT_OPTIMIZERS = {
    "wgan_gp": ("adam", {"lr": DEFAULT_LR, "beta1": 0.0, "beta2": 0.9}),  # see the docstring
    "wgan": ("rmsprop", {"lr": 5e-5}),  # momentum destabilises weight clipping
}
# `penalty_form` where the method leaves it out (docs/decisions.md, "Gradient penalty")
DEFAULT_PENALTY_FORM = "one_sided"
# A critic whose loss (penalty included) exceeds this in magnitude has diverged: every
# supported loss stays many orders of magnitude below it on data of unit scale.
EXPLODING_CRITIC_LOSS = 1e6
# Steps between checks of the critic (one host-device sync each), and at every checkpoint.
CHECK_EVERY = 100


class CriticDiverged(RuntimeUserError):
    """The critic's loss became non-finite or exploded; the diverged state was not saved."""

    def __init__(self, step: int, value: float, checkpoint) -> None:
        what = "became non-finite" if not math.isfinite(value) else \
            f"reached {value:.3g} (more than {EXPLODING_CRITIC_LOSS:.0e} in magnitude)"
        kept = f"kept the last good checkpoint at {checkpoint}" if checkpoint else \
            "no checkpoint had been written yet"
        super().__init__(f"the critic diverged by step {step}: its loss {what}; stopped, {kept}",
                         hint="use a smaller learning rate, a gradient penalty (penalty = 10) or wgan_gp")
        self.step = step
        self.value = value


def loss_from_options(value: Any) -> AdversarialLoss:
    """The loss named by the method's `loss` option (plain value: a name or a call dict)."""
    if value is None:
        return make_loss(DEFAULT_LOSS)
    if isinstance(value, dict):
        return make_loss(value["name"], **{k: v for k, v in value.items() if k != "name"})
    return make_loss(str(value))


def default_optimizer(loss: AdversarialLoss) -> tuple[str, dict]:
    """The optimizer `loss` trains with when the fit block names none."""
    return DEFAULT_OPTIMIZERS.get(loss.name, ("adam", {"lr": DEFAULT_LR, "beta1": 0.5, "beta2": 0.9}))


def _with_lr(spec: tuple[str, dict], lr: float | None) -> tuple[str, dict]:
    """`spec` with the learning rate set where one was given (None: keep the spec's)."""
    name, options = spec
    return (name, {**options, "lr": lr}) if lr is not None else spec


class _PlayerLoss(torch.nn.Module):
    """One player's loss as a module's forward, so DistributedDataParallel can wrap it.
    Only that player's modules are registered: its wrapper synchronises that player's
    gradients, never the other's, though the forward runs both."""

    def __init__(self, modules: list[torch.nn.Module], loss) -> None:
        super().__init__()
        self.player = torch.nn.ModuleList(modules)
        self._loss = loss

    def forward(self, *inputs):
        return self._loss(*inputs)


class Adversarial(Engine):
    name = "adversarial"

    def __init__(self, model, settings: TrainSettings) -> None:
        super().__init__(model, settings)
        options = settings.method_options
        self.loss = loss_from_options(options.get("loss"))
        self.critic_steps = int(options.get("critic_steps") or self.loss.default_critic_steps)
        self.penalty = float(options["penalty"]) if "penalty" in options else float(self.loss.default_penalty or 0)
        self.penalty_form = str(options.get("penalty_form") or DEFAULT_PENALTY_FORM)
        self.clip = float(options["clip"]) if "clip" in options else self.loss.default_clip
        self.optimizer_specs = self._optimizer_specs()
        generator_spec, critic_spec = self.optimizer_specs
        self.generator_params = model.generator_parameters()
        self.critic_params = model.critic_parameters()
        self.generator_optimizer = make_optimizer(self.generator_params, generator_spec)
        self.critic_optimizer = make_optimizer(self.critic_params, critic_spec)
        self._share = (settings.rank, settings.world_size)  # of each global draw (ImplicitModel.generate)
        # the players' losses; over several processes, their DistributedDataParallel wrappers (fit)
        self._critic_objective = self._critic_loss
        self._generator_objective = self._generator_loss
        self._peak: torch.Tensor | None = None  # largest |critic loss| since the last check
        self._step = 0
        self._run_dir = None

    def _optimizer_specs(self) -> tuple[tuple[str, dict], tuple[str, dict]]:
        """(generator, critic) optimizers: the fit block's, else the loss's default; a
        learning rate left unset (None) is the loss's default."""
        s, default = self.settings, default_optimizer(self.loss)
        default_lr = default[1]["lr"]
        if "optimizer" in self.model.spec.fit:
            generator = _with_lr(s.optimizer, s.optimizer[1].get("lr") or default_lr)
        else:
            generator = _with_lr(default, s.optimizer[1].get("lr"))
        if s.critic_optimizer is None:
            return generator, generator
        return generator, _with_lr(s.critic_optimizer, s.critic_optimizer[1].get("lr") or default_lr)

    # ---- one step: k critic updates, then one generator update --------------------------
    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        real_batches = _split_rows(batch, self.critic_steps)
        for real in real_batches:
            critic_loss, real_out, fake_out, penalty = self._critic_update(real)
        generator_loss = self._generator_update(real_batches[-1])
        # the last critic update's outputs: what the critic certifies before the generator moves
        estimate = self.loss.estimate(real_out, fake_out)
        out = {"loss": generator_loss, "critic_loss": critic_loss, "estimate": estimate}
        if penalty is not None:
            out["penalty"] = penalty
        out = self._reported(out)
        self._watch(out["critic_loss"], step)  # the global value: every process stops alike
        return out

    def _critic_update(self, real: dict[str, torch.Tensor]):
        model = self.model
        n = _rows(real)
        with torch.no_grad():
            real_in = model.data_side(real)
            fake_in = model.generator_side(n, model.covariates(real), share=self._share)
        eps = self._penalty_weights(n, real_in[0])
        loss, real_out, fake_out, penalty = self._critic_objective(real_in, fake_in, eps)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._clip_grad(self.critic_params)
        self.critic_optimizer.step()
        if self.clip is not None:  # parameters are equal on every process, so clipped alike
            clip_weights_(model.critic, self.clip)
        return loss.detach(), real_out.detach(), fake_out.detach(), None if penalty is None else penalty.detach()

    def _critic_loss(self, real_in: tuple, fake_in: tuple, eps: torch.Tensor | None):
        """The critic's loss (penalty included), its outputs on both sides, and the penalty."""
        model = self.model
        real_out, fake_out = model.score(*real_in), model.score(*fake_in)
        loss = self.loss.critic_loss(real_out, fake_out)
        penalty = None
        if self.penalty > 0:
            penalty = gradient_penalty(model.score, real_in, fake_in, eps=eps,
                                       one_sided=self.penalty_form == "one_sided")
            loss = loss + self.penalty * penalty
        return loss, real_out, fake_out, penalty

    def _penalty_weights(self, n: int, like: torch.Tensor) -> torch.Tensor | None:
        """Over several processes, this rank's rows of the global batch's interpolation
        weights (as for the noise); in one process None: gradient_penalty draws them."""
        rank, world_size = self._share
        if self.penalty <= 0 or world_size == 1:
            return None
        return torch.rand(n * world_size, device=like.device, dtype=like.dtype)[rank::world_size]

    def _generator_update(self, real: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = self._generator_objective(real)
        self.generator_optimizer.zero_grad(set_to_none=True)
        # `inputs` restricts backward to the generator: no gradients for the critic's weights
        loss.backward(inputs=self.generator_params)
        self._clip_grad(self.generator_params)
        self.generator_optimizer.step()
        return loss.detach()

    def _generator_loss(self, real: dict[str, torch.Tensor]) -> torch.Tensor:
        model = self.model
        fake_out = model.score(*model.generator_side(_rows(real), model.covariates(real), share=self._share))
        if model.bidirectional:
            return self._bigan_loss(model.score(*model.data_side(real)), fake_out)
        return self.loss.generator_loss(fake_out)

    def _bigan_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        """Generator and encoder minimise the critic's loss with real and fake swapped
        (the non-saturating form for the logistic losses); for `minimax`, the saddle
        objective itself: they maximise the critic's loss."""
        if self.loss.name == "minimax":
            return -self.loss.critic_loss(real_out, fake_out)
        return self.loss.critic_loss(fake_out, real_out)

    def _reported(self, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The metrics to log: across processes, means over the global batch (one all-reduce)."""
        if self.settings.world_size == 1:
            return metrics
        import torch.distributed as dist
        values = torch.stack(list(metrics.values()))
        dist.all_reduce(values)
        return dict(zip(metrics, (values / self.settings.world_size).unbind()))

    def _wrap_players(self, device: torch.device) -> None:
        """Each player's loss in its own DistributedDataParallel wrapper: the critic's
        registers the critic, the generator's everything else (generator nets, encoder,
        params), so each backward averages its own player's gradients."""
        from torch.nn.parallel import DistributedDataParallel
        ids = [device.index] if device.type == "cuda" else None
        model = self.model
        generator = [module for name, module in model.named_children() if name != "critic"]
        self._critic_objective = DistributedDataParallel(_PlayerLoss([model.critic], self._critic_loss),
                                                         device_ids=ids)
        self._generator_objective = DistributedDataParallel(_PlayerLoss(generator, self._generator_loss),
                                                            device_ids=ids)

    def _clip_grad(self, params: list) -> None:
        if self.settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, self.settings.grad_clip)

    # ---- divergence watch ----------------------------------------------------------------
    def _watch(self, critic_loss: torch.Tensor, step: int) -> None:
        size = critic_loss.abs()
        # torch.maximum propagates NaN, so one NaN since the last check is kept
        self._peak = size if self._peak is None else torch.maximum(self._peak, size)
        self._step = step
        if step % CHECK_EVERY == 0:
            self._check()

    def _check(self) -> None:
        if self._peak is None:
            return
        value = float(self._peak)
        self._peak = None
        if not math.isfinite(value) or value > EXPLODING_CRITIC_LOSS:
            run = self._run_dir
            raise CriticDiverged(self._step, value, run.checkpoint_path if run is not None and run.has_checkpoint
                                 else None)

    def _penalty_summary(self) -> dict[str, Any]:
        """What regularised the critic, for fit_result.json and `dgm fit`'s report."""
        if self.penalty > 0:
            return {"penalty": f"{self.penalty:g} x {self.penalty_form.replace('_', '-')} gradient penalty"}
        return {"clip": self.clip} if self.clip is not None else {}

    # ---- checkpoints and the loop ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self._check()  # never hand a diverged critic to a checkpoint
        return {"model": self.model.state_dict(), "generator_optimizer": self.generator_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if "generator_optimizer" in state:
            self.generator_optimizer.load_state_dict(state["generator_optimizer"])
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])

    def fit(self, data, run_dir, resume_state, device) -> dict:
        s = self.settings
        _refuse_unsupported(s)
        rows = _rows(data)
        per_step = self.critic_steps * per_process_batch(s)  # this process's rows a step
        if rows // s.world_size < self.critic_steps:
            raise RuntimeUserError(f"{rows} training rows cannot feed {self.critic_steps} critic updates a step"
                                   + (f" in each of {s.world_size} processes" if s.world_size > 1 else ""),
                                   hint="use more data or fewer critic_steps")
        config = LoopConfig(epochs=s.epochs, max_steps=s.max_steps, batch_size=per_step, seed=s.seed,
                            quiet=s.quiet, checkpoint_every_s=s.checkpoint_every_s,
                            metrics_every=s.metrics_every, drop_last=rows >= per_step * s.world_size,
                            rank=s.rank, world_size=s.world_size, lr_schedule=s.lr_schedule)
        if s.world_size > 1:
            self._wrap_players(device)
        self._run_dir = run_dir
        self.model.train()
        result = run_loop(self, data, config, run_dir, resume_state=resume_state, device=device)
        self.model.eval()
        generator, critic = self.optimizer_specs
        return {"steps": result.steps, "critic_steps": self.critic_steps, **self._penalty_summary(),
                "epochs": round(result.epochs_done, 3),
                "optimizers": {"generator": [generator[0], generator[1]], "critic": [critic[0], critic[1]]},
                "final_loss": result.final_loss, "stopped_by": result.stopped_by,
                "elapsed_s": round(result.elapsed_s, 2),
                "checkpoint": str(result.checkpoint) if result.checkpoint else None}


def _refuse_unsupported(s: TrainSettings) -> None:
    """Options the shared loop offers that this schedule does not implement."""
    if s.precision != "fp32" or s.compile:
        raise RuntimeUserError("adversarial training runs in fp32 without torch.compile in this version",
                               hint="drop --precision / --compile")


def _rows(batch: dict[str, torch.Tensor]) -> int:
    return len(next(iter(batch.values())))


def _split_rows(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    """`parts` row blocks of a batch (equal when the batch is k × B rows)."""
    if parts == 1:
        return [batch]
    pieces = {k: torch.tensor_split(v, parts) for k, v in batch.items()}
    return [{k: v[i] for k, v in pieces.items()} for i in range(parts)]
