"""Training AwaRes policies: cold-start SFT on collected trajectories, then multi-turn GRPO.

* :mod:`~awares_agent.training.data`: read and check ``awares collect`` exports (:func:`load_training_data`),
  and held-out rows as evaluation samples (:func:`policy_samples`).
* :mod:`~awares_agent.training.turns`: which assistant turns are crop requests; per-token loss weights.
* :mod:`~awares_agent.training.collator`: TRL's vision collator plus those weights.
* :mod:`~awares_agent.training.config`: :class:`AwaresSFTConfig` and :class:`AwaresGRPOConfig`, TRL's
  configs with the paper's defaults; the ``awares train sft`` / ``grpo`` flags are generated from them.
* :mod:`~awares_agent.training.sft`: :class:`AwaresSFTTrainer`, ``SFTTrainer`` with the weighted loss.
* :mod:`~awares_agent.training.models`: load a VLM to train; save the result as a checkpoint the agent runs.
* :mod:`~awares_agent.training.evaluate`: the trained policy through the real agent on held-out rows.
* :mod:`~awares_agent.training.rollouts`: rollouts of the real agent on the policy, as token ids and images.
* :mod:`~awares_agent.training.grpo`: :class:`AwaresGRPOTrainer`, ``GRPOTrainer`` on those rollouts.
* :mod:`~awares_agent.training.rewards`: the AwaRes reward ``R = R_ans - C_tool``.
* :mod:`~awares_agent.training.guards`: :class:`CallRateGuard`, against tool-call collapse during RL.
* :mod:`~awares_agent.training.cli`: ``awares train sft``, ``awares train grpo`` and ``awares train eval``.

Needs the ``train`` extra (``pip install 'awares[train]'``: TRL, peft, transformers, torch).
"""

from __future__ import annotations

from awares_agent.lazy_exports import lazy_exports

# The names below load TRL and torch (seconds): they are imported on first use, so that the command line's
# `awares train --help` and the modules that need none of it stay fast.
_EXPORTS = {
    "AwaresGRPOConfig": "awares_agent.training.config",
    "AwaresGRPOTrainer": "awares_agent.training.grpo",
    "AwaresSFTConfig": "awares_agent.training.config",
    "AwaresSFTTrainer": "awares_agent.training.sft",
    "CallRateGuard": "awares_agent.training.guards",
    "CropCost": "awares_agent.training.rewards",
    "Episode": "awares_agent.training.rollouts",
    "RolloutRunner": "awares_agent.training.rollouts",
    "TrainingData": "awares_agent.training.data",
    "TrainingDataError": "awares_agent.training.data",
    "WeightedVisionCollator": "awares_agent.training.collator",
    "awares_reward": "awares_agent.training.rewards",
    "evaluate_policy": "awares_agent.training.evaluate",
    "load_for_training": "awares_agent.training.models",
    "load_training_data": "awares_agent.training.data",
    "policy_samples": "awares_agent.training.data",
    "save_trained": "awares_agent.training.models",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
