"""A guard against tool-call collapse during RL: the crop-call rate must stay inside a band.

Related systems report the tool-call rate collapsing to zero during RL (or zooming disappearing after it),
and an SFT model can over-call. :class:`CallRateGuard` is a ``transformers`` callback that reads the call
rate from every log and, when it leaves ``[low, high]`` for ``patience`` logs in a row, warns or stops
training. It also remembers the saved checkpoint with the best mean reward (over the logs since the save
before), so a stopped run can keep that one instead of the collapsed weights; what happened is written to
``OUTPUT_DIR/guard.json``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Literal

from transformers import TrainerCallback

from awares_agent.errors import ConfigError

__all__ = ["GUARD_FILE", "CallRateGuard"]

logger = logging.getLogger(__name__)

GUARD_FILE = "guard.json"


class CallRateGuard(TrainerCallback):
    """Warn, or stop training, when the logged crop-call rate leaves ``[low, high]``.

    Args:
        low: the lowest acceptable call rate (share of rollouts that requested crops).
        high: the highest acceptable call rate.
        action: ``"warn"`` (log a warning and go on) or ``"stop"`` (end training after this step).
        patience: consecutive logs outside the band before acting.
        rate_key: the log entry holding the call rate.
        reward_key: the log entry holding the mean reward (to pick the best checkpoint).

    Attributes:
        events: every time the rate left the band: ``{"step", "rate", "action"}``.
        best_checkpoint: the saved checkpoint with the best mean reward so far (``None`` before a save).
        stopped: whether the guard stopped training.
    """

    def __init__(
        self,
        *,
        low: float = 0.05,
        high: float = 0.95,
        action: Literal["warn", "stop"] = "warn",
        patience: int = 1,
        rate_key: str = "crops/call_rate",
        reward_key: str = "reward",
    ) -> None:
        if not 0 <= low < high <= 1:
            raise ConfigError(f"the call-rate band must satisfy 0 <= low < high <= 1, got [{low}, {high}]")
        if action not in ("warn", "stop"):
            raise ConfigError(f"the guard's action must be 'warn' or 'stop', got {action!r}")
        if patience < 1:
            raise ConfigError(f"the guard's patience must be >= 1, got {patience}")
        self.low, self.high, self.action, self.patience = low, high, action, patience
        self.rate_key, self.reward_key = rate_key, reward_key
        self.events: list[dict[str, Any]] = []
        self.best_checkpoint: str | None = None
        self.stopped = False
        self._outside = 0
        self._best_reward = -math.inf
        self._rewards: list[float] = []  # logged since the last save

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
    ) -> None:
        logs = logs or {}
        reward = logs.get(self.reward_key)
        if reward is not None and math.isfinite(reward):
            self._rewards.append(float(reward))
        rate = logs.get(self.rate_key)
        if rate is None:
            return
        if self.low <= rate <= self.high:
            self._outside = 0
            return
        self._outside += 1
        if self._outside < self.patience:
            return
        side = "collapsed below" if rate < self.low else "rose above"
        self.events.append({"step": state.global_step, "rate": rate, "action": self.action})
        logger.warning(
            "step %d: the crop-call rate %.3f %s the band [%.2f, %.2f] for %d log(s)%s",
            state.global_step, rate, side, self.low, self.high, self._outside,
            "; stopping" if self.action == "stop" else "",
        )  # fmt: skip
        if self.action == "stop":
            self.stopped = True
            control.should_training_stop = True
            control.should_save = False  # the collapsed weights are not worth a checkpoint
        self._write(args)

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        # A checkpoint is scored by the mean reward logged since the one before: one step's reward (a few
        # prompts' rollouts) is too noisy to pick by.
        if not self._rewards:
            return
        reward = sum(self._rewards) / len(self._rewards)
        self._rewards = []
        if reward > self._best_reward:
            self._best_reward = reward
            self.best_checkpoint = str(Path(args.output_dir) / f"checkpoint-{state.global_step}")
            self._write(args)

    def _write(self, args: Any) -> None:
        if not getattr(args, "output_dir", None):
            return
        record = {
            "band": [self.low, self.high],
            "action": self.action,
            "events": self.events,
            "stopped": self.stopped,
            "best_checkpoint": self.best_checkpoint,
            "best_reward": self._best_reward if math.isfinite(self._best_reward) else None,
        }
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / GUARD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
