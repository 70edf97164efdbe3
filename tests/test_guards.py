"""The call-rate guard: warns or stops when RL drives the crop-call rate out of its band."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from awares_agent.errors import ConfigError
from awares_agent.training.guards import GUARD_FILE, CallRateGuard


def _run(
    guard: CallRateGuard, logs: list[dict[str, float]], out: Path, save_every: int = 1
) -> TrainerControl:
    """Feed the guard one log per step, as Trainer does, saving every ``save_every`` steps until it stops."""
    args = TrainingArguments(output_dir=str(out), report_to=[], use_cpu=True)
    state, control = TrainerState(), TrainerControl()
    for step, entry in enumerate(logs, start=1):
        state.global_step = step
        guard.on_log(args, state, control, logs=entry)
        if control.should_training_stop:
            break
        if step % save_every == 0:
            guard.on_save(args, state, control)
    return control


def test_a_scripted_collapse_stops_training_and_names_the_best_checkpoint(tmp_path: Path) -> None:
    # The call rate falls to zero while the reward first rises, then the policy stops calling at all.
    logs = [
        {"crops/call_rate": 0.6, "reward": 0.40},
        {"crops/call_rate": 0.5, "reward": 0.55},
        {"crops/call_rate": 0.3, "reward": 0.50},
        {"crops/call_rate": 0.02, "reward": 0.45},
        {"crops/call_rate": 0.0, "reward": 0.44},
        {"crops/call_rate": 0.0, "reward": 0.44},
    ]
    guard = CallRateGuard(low=0.05, high=0.95, action="stop", patience=2)
    control = _run(guard, logs, tmp_path)
    assert control.should_training_stop and guard.stopped
    assert guard.events == [{"step": 5, "rate": 0.0, "action": "stop"}]  # after two logs below the band
    assert guard.best_checkpoint == str(tmp_path / "checkpoint-2")  # the best reward, before the collapse
    record = json.loads((tmp_path / GUARD_FILE).read_text())
    assert record["stopped"] and record["best_checkpoint"].endswith("checkpoint-2")


def test_warn_goes_on_and_a_rate_inside_the_band_resets_patience(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logs = [{"crops/call_rate": r} for r in (0.99, 0.5, 0.99, 0.98, 0.5)] + [{"loss": 1.0}]
    guard = CallRateGuard(low=0.1, high=0.9, action="warn", patience=2)
    with caplog.at_level(logging.WARNING, logger="awares_agent.training.guards"):
        control = _run(guard, logs, tmp_path)
    assert not control.should_training_stop and not guard.stopped
    assert [e["step"] for e in guard.events] == [4]  # step 1 alone was not enough; step 2 reset the count
    assert "rose above the band" in caplog.text


def test_bad_guard_options_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="band"):
        CallRateGuard(low=0.9, high=0.1)
    with pytest.raises(ConfigError, match="action"):
        CallRateGuard(action="panic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="patience"):
        CallRateGuard(patience=0)


def test_a_checkpoint_is_scored_by_the_mean_reward_since_the_save_before(tmp_path: Path) -> None:
    # One lucky step (0.9) must not make checkpoint-2 the best: its window averages 0.5 against 0.6.
    logs = [{"crops/call_rate": 0.5, "reward": r} for r in (0.1, 0.9, 0.6, 0.6)]
    guard = CallRateGuard(action="stop")
    _run(guard, logs, tmp_path, save_every=2)
    assert guard.best_checkpoint == str(tmp_path / "checkpoint-4")
    assert json.loads((tmp_path / GUARD_FILE).read_text())["best_reward"] == pytest.approx(0.6)
