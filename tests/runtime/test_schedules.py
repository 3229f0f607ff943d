"""Learning-rate schedules: the factor function, every optimizer follows it, resume is exact."""
import math
import os
import signal

import pytest
import torch

import dgmdsl
from dgmdsl.runtime.errors import RuntimeUserError
from dgmdsl.runtime.loop import run_loop
from dgmdsl.runtime.schedules import LearningRateSchedule, lr_factor, parse_lr_schedule
from tests.runtime.helpers import MIX_FIT, mix_spec
from tests.runtime.test_loop import CPU, LinearTrainable, _assert_same_parameters, _config, _data, _resume, _run_dir


def mix(schedule: str = "lr_schedule = constant"):
    return dgmdsl.loads(mix_spec(f"{MIX_FIT}, {schedule}"))["Mix"]


def test_cosine_factor_with_warmup_and_floor():
    s = {"name": "cosine", "warmup": 10, "final": 0.1}
    assert [lr_factor(s, k, 110) for k in (1, 5, 10)] == [0.1, 0.5, 1.0]
    assert lr_factor(s, 60, 110) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert lr_factor(s, 110, 110) == pytest.approx(0.1)
    assert lr_factor({"name": "cosine"}, 1, 1) == pytest.approx(0.0)  # one step: straight to the end


def test_step_factor_switches_after_the_fraction():
    s = {"name": "step", "at": 0.6, "factor": 0.1}
    assert [lr_factor(s, k, 10) for k in (1, 6, 7, 10)] == [1.0, 1.0, 0.1, 0.1]
    assert lr_factor({"name": "constant"}, 7, 10) == 1.0


def test_every_optimizer_of_an_engine_is_scheduled():
    class TwoPlayers:
        def __init__(self):
            self.generator_optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
            self.critic_optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-2)

    engine = TwoPlayers()
    schedule = LearningRateSchedule("cosine", total=4, trainable=engine)
    schedule.apply(3)
    expected = 0.5 * (1 + math.cos(math.pi * 3 / 4))
    assert engine.generator_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * expected)
    assert engine.critic_optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * expected)


def test_fit_block_schedule_reaches_the_optimizer():
    run = mix("lr_schedule = step(at = 0.5, factor = 0.1)").fit(max_steps=8, quiet=True, device="cpu")
    group, base = run.engine.optimizer.param_groups[0], run.engine.settings.optimizer[1]["lr"]
    assert group["initial_lr"] == pytest.approx(base) and group["lr"] == pytest.approx(0.1 * base)


def test_argument_overrides_the_spec_and_text_is_checked():
    run = mix("lr_schedule = step(at = 0.5, factor = 0.1)").fit(max_steps=8, quiet=True, device="cpu",
                                                               lr_schedule="constant")
    assert run.engine.optimizer.param_groups[0]["lr"] == pytest.approx(run.engine.settings.optimizer[1]["lr"])
    assert parse_lr_schedule("step(0.6, 0.5)") == {"name": "step", "at": 0.6, "factor": 0.5}
    with pytest.raises(RuntimeUserError, match="not a schedule") as err:
        parse_lr_schedule("cosin")
    assert "did you mean 'cosine'" in err.value.hint


def test_interrupted_and_resumed_run_follows_the_same_schedule(tmp_path):
    schedule = {"name": "cosine", "warmup": 2}
    full = LinearTrainable(seed=0)
    run_loop(full, _data(), _config(max_steps=10, lr_schedule=schedule), None, device=CPU)

    def interrupt_at_step_3(step, output):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    first = LinearTrainable(seed=0)
    run_loop(first, _data(), _config(max_steps=10, lr_schedule=schedule), _run_dir(tmp_path), device=CPU,
             on_step=interrupt_at_step_3)
    second = LinearTrainable(seed=5)
    _resume(tmp_path, "run", second, _config(max_steps=10, lr_schedule=schedule))
    assert first.losses + second.losses == full.losses
    _assert_same_parameters(full, second)
    # and the schedule changed the run: a constant rate gives other losses
    constant = LinearTrainable(seed=0)
    run_loop(constant, _data(), _config(max_steps=10), None, device=CPU)
    assert constant.losses != full.losses
    assert second.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine ends at 0
