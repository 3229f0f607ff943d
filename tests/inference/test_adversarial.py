"""The adversarial engine: update counts, weight clipping, optimizers, logged metrics,
divergence stops, bit-exact resume and `dgm eval` output."""
import json

import pytest
import torch

import dgmdsl
from dgmdsl.cli import main as dgm
from dgmdsl.inference import adversarial as adv
from dgmdsl.runtime.api import compile_model, resolve_settings


def spec(method: str, fit: str = "", data: str = "eight_gaussians(n = 96, seed = 0)") -> str:
    return f"""model Small {{
    data   x : real[2]
    latent z : real[3]
    net    G = MLP(hidden = [8])
    critic D = MLP(hidden = [8])
    z ~ Normal(0, 1)
    x = G(z)
    fit {{ method = {method}, data = {data}, batch_size = 8 {fit} }}
}}"""


def fit(text: str, tmp_path, name: str = "run", **options):
    model = dgmdsl.loads(text)["Small"]
    return model.fit(out=tmp_path / name, quiet=True, device="cpu", **options)


def adam_steps(optimizer) -> set[int]:
    return {int(state["step"]) for state in optimizer.state.values()}


def test_max_steps_counts_generator_updates_each_after_k_critic_updates(tmp_path, monkeypatch):
    seen = []
    original = adv.Adversarial._critic_update

    def spy(self, real):
        seen.append(len(real["x"]))
        return original(self, real)

    monkeypatch.setattr(adv.Adversarial, "_critic_update", spy)
    run = fit(spec("adversarial(loss = wgan_gp, critic_steps = 3)"), tmp_path, max_steps=4)
    assert run.fit_result["steps"] == 4 and run.fit_result["critic_steps"] == 3
    assert adam_steps(run.engine.generator_optimizer) == {4}
    assert adam_steps(run.engine.critic_optimizer) == {12}
    assert seen == [8] * 12  # every critic update sees its own batch of batch_size rows
    # the run records what the defaults resolved to, before a schedule moves the rate
    recorded = json.loads((tmp_path / "run" / "fit_result.json").read_text())["optimizers"]
    assert recorded == {"critic_optimizer": "Adam(lr=0.001, betas=(0.0, 0.9))",
                        "generator_optimizer": "Adam(lr=0.001, betas=(0.0, 0.9))"}


def test_wgan_clipping_keeps_critic_weights_within_the_bound(tmp_path):
    run = fit(spec("adversarial(loss = wgan, clip = 0.05)"), tmp_path, max_steps=3)
    weights = torch.cat([p.detach().flatten() for p in run.compiled.critic.parameters()])
    assert float(weights.abs().max()) == pytest.approx(0.05)  # the bound binds (init is wider)
    assert isinstance(run.engine.critic_optimizer, torch.optim.RMSprop)
    generator = torch.cat([p.detach().flatten() for p in run.compiled.nets["G"].parameters()])
    assert float(generator.abs().max()) > 0.05  # the generator is not clipped


def engine_with(text: str, **options):
    model = dgmdsl.loads(text)["Small"]
    return adv.Adversarial(compile_model(model), resolve_settings(model, **options))


def optimizer_summary(optimizer) -> tuple:
    group = optimizer.param_groups[0]
    return type(optimizer).__name__, group["lr"], group.get("betas")


def test_loss_defaults_and_spec_optimizers():
    engine = engine_with(spec("adversarial(loss = wgan_gp)"))
    assert engine.critic_steps == 5 and engine.penalty == 10.0 and engine.clip is None
    for optimizer in (engine.generator_optimizer, engine.critic_optimizer):
        assert optimizer_summary(optimizer) == ("Adam", 1e-3, (0.0, 0.9))
    engine = engine_with(spec("adversarial(loss = wgan)"))
    assert engine.critic_steps == 5 and engine.clip == 0.01 and engine.penalty == 0.0
    assert optimizer_summary(engine.critic_optimizer) == ("RMSprop", 5e-5, None)
    engine = engine_with(spec("adversarial"))
    assert engine.loss.name == "non_saturating" and engine.critic_steps == 1
    assert optimizer_summary(engine.generator_optimizer) == ("Adam", adv.DEFAULT_LR, (0.5, 0.9))
    engine = engine_with(spec("adversarial(loss = wgan_gp)"), lr=3e-3)  # --lr replaces the default step
    assert optimizer_summary(engine.critic_optimizer) == ("Adam", 3e-3, (0.0, 0.9))
    engine = engine_with(spec("adversarial(loss = f_gan(divergence = reverse_kl))",
                              ", optimizer = sgd(lr = 0.01), critic_optimizer = adam(lr = 0.002)"))
    assert engine.loss.divergence == "reverse_kl" and engine.penalty == 0.0
    assert optimizer_summary(engine.generator_optimizer) == ("SGD", 0.01, None)
    assert optimizer_summary(engine.critic_optimizer) == ("Adam", 0.002, (0.9, 0.999))
    engine = engine_with(spec("adversarial(loss = wgan_gp)", ", optimizer = optimistic_adam(lr = 0.002, beta1 = 0),"
                                                              " critic_optimizer = adam(lr = 0.001, beta1 = 0)"))
    assert optimizer_summary(engine.generator_optimizer) == ("OptimisticAdam", 0.002, (0.0, 0.999))
    assert optimizer_summary(engine.critic_optimizer) == ("Adam", 0.001, (0.0, 0.999))
    generator = {id(p) for g in engine.generator_optimizer.param_groups for p in g["params"]}
    critic = {id(p) for g in engine.critic_optimizer.param_groups for p in g["params"]}
    assert critic == {id(p) for p in engine.model.critic.parameters()} and not generator & critic


@pytest.mark.parametrize("written, form, flat_critic_penalty", [("", "one_sided", 0.0),
                                                                ("one_sided", "one_sided", 0.0),
                                                                ("two_sided", "two_sided", 1.0)])
def test_penalty_form_reaches_the_critic_loss(written, form, flat_critic_penalty):
    # a critic with a zero output layer is flat: gradient 0 on every interpolate, priced
    # 10 * (0 - 1)^2 by the two-sided penalty and nothing by the one-sided (the default)
    engine = engine_with(spec(f"adversarial(loss = wgan_gp{', penalty_form = ' + written if written else ''})"))
    assert engine.penalty_form == form
    with torch.no_grad():
        last = [m for m in engine.model.critic.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.zero_()
    real, fake = (torch.randn(8, 2),), (torch.randn(8, 2),)
    loss, real_out, fake_out, penalty = engine._critic_loss(real, fake, None)
    assert penalty.item() == pytest.approx(flat_critic_penalty)
    assert loss.item() == pytest.approx(fake_out.mean().item() - real_out.mean().item() + 10 * flat_critic_penalty)


def test_fit_reports_the_critic_penalty(tmp_path, capsys):
    run = fit(spec("adversarial(loss = wgan_gp, critic_steps = 2, penalty = 5, penalty_form = two_sided)"),
              tmp_path, max_steps=1)
    assert run.fit_result["penalty"] == "5 x two-sided gradient penalty"
    assert fit(spec("adversarial(loss = wgan)"), tmp_path, "clipped", max_steps=1).fit_result["clip"] == 0.01
    path = tmp_path / "wgan_gp.dgm"
    path.write_text(spec("adversarial(loss = wgan_gp, critic_steps = 2)"))
    assert dgm(["fit", str(path), "--max-steps", "1", "--out", str(tmp_path / "cli"), "--device", "cpu"]) == 0
    assert "  penalty: 10 x one-sided gradient penalty" in capsys.readouterr().out.splitlines()


def test_generator_step_leaves_the_critic_untouched():
    engine = engine_with(spec("adversarial(loss = hinge)"))
    critic = {k: v.clone() for k, v in engine.model.critic.state_dict().items()}
    generator = {k: v.clone() for k, v in engine.model.nets.state_dict().items()}
    engine._generator_update({"x": torch.randn(8, 2)})
    assert all(torch.equal(v, engine.model.critic.state_dict()[k]) for k, v in critic.items())
    assert all(p.grad is None for p in engine.model.critic.parameters())
    assert not all(torch.equal(v, engine.model.nets.state_dict()[k]) for k, v in generator.items())


def test_metrics_log_both_losses_and_the_estimate(tmp_path):
    run = fit(spec("adversarial(loss = wgan_gp, critic_steps = 2)"), tmp_path, max_steps=4)
    records = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert records and {"loss", "critic_loss", "estimate", "penalty"} <= set(records[-1])
    # critic_loss = -estimate + 10 * penalty for wgan_gp, per step and so on average
    last = records[-1]
    assert last["critic_loss"] == pytest.approx(-last["estimate"] + 10 * last["penalty"], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("optimizers", ["", ", optimizer = optimistic_adam(lr = 0.002, beta1 = 0)"])
def test_resume_gives_the_parameters_of_an_uninterrupted_run(tmp_path, optimizers):
    text = spec("adversarial(loss = wgan_gp, critic_steps = 2)", optimizers)
    whole = fit(text, tmp_path, "whole", max_steps=6)
    fit(text, tmp_path, "split", max_steps=3)
    resumed = fit(text, tmp_path, "split", max_steps=6, resume=True)
    assert resumed.fit_result["steps"] == 6
    expected, got = whole.compiled.state_dict(), resumed.compiled.state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert adam_steps(resumed.engine.critic_optimizer) == {12}


def test_exploding_or_nan_critic_stops_with_a_clear_message():
    engine = engine_with(spec("adversarial(loss = wgan_gp)"))
    engine._watch(torch.tensor(3.0), step=1)
    engine._watch(torch.tensor(-2e7), step=2)  # magnitude counts
    with pytest.raises(adv.CriticDiverged, match="diverged by step 2.*2e\\+07"):
        engine.state_dict()  # a checkpoint never takes a diverged critic
    engine._watch(torch.tensor(float("nan")), step=3)
    engine._watch(torch.tensor(1.0), step=4)  # a later finite value does not hide the NaN
    with pytest.raises(adv.CriticDiverged, match="non-finite"):
        engine._check()
    engine._watch(torch.tensor(1.0), step=5)
    assert "model" in engine.state_dict()


def test_divergence_during_fit_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    # an unconstrained Wasserstein critic (no penalty, no clip) trained by plain SGD at a
    # large step grows without bound; checks every 2 steps, checkpoints every step
    monkeypatch.setattr(adv, "CHECK_EVERY", 2)
    monkeypatch.setattr(adv, "EXPLODING_CRITIC_LOSS", 50.0)
    text = spec("adversarial(loss = wgan_gp, penalty = 0, critic_steps = 1)",
                ", critic_optimizer = sgd(lr = 1.0)")
    model = dgmdsl.loads(text)["Small"]
    settings = resolve_settings(model, max_steps=200, quiet=True)
    settings.checkpoint_every_s = 0.0
    from dgmdsl.runtime.rundir import RunDir
    run_dir = RunDir.create(tmp_path / "run", text, "Small", {}, False)
    engine = adv.Adversarial(compile_model(model), settings)
    data = {"x": torch.randn(96, 2) * 3}
    with pytest.raises(adv.CriticDiverged) as caught:
        engine.fit(data, run_dir, None, torch.device("cpu"))
    assert str(run_dir.checkpoint_path) in str(caught.value)
    saved = torch.load(run_dir.checkpoint_path, weights_only=True)
    assert saved["step"] < caught.value.step


def test_dgm_eval_prints_mmd_noise_floor_and_modes(tmp_path, capsys):
    fit(spec("adversarial"), tmp_path, max_steps=2)
    assert dgm(["eval", str(tmp_path / "run"), "--limit", "64", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for key in ("mmd:", "mmd_noise_floor:", "modes_covered:", "high_quality_fraction:"):
        assert key in out
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["n_modes"] == 8 and saved["samples"] == 32
