"""Multi-turn GRPO with the crop-cost reward: :class:`AwaresGRPOTrainer`, TRL 1.16's ``GRPOTrainer`` on
rollouts of the real agent.

TRL's own multi-turn paths do not fit AwaRes (``../shared/docs/training.md``): ``tools=`` renders the crops
as a ``role: tool`` message (inference sends them in a user turn) and cannot parse the ``GET_CROPS`` text
protocol; ``rollout_func=`` renders freely but cannot carry images, so the training forward would run with
no pixels at all, silently. This trainer keeps TRL's loss, advantages, KL, logging and scale-out, and
replaces generation:

* ``_generate`` runs every rollout through :class:`~awares_agent.training.rollouts.RolloutRunner` (the agent
  graph on the policy's weights, rendered as at inference) and returns the exact token ids, the mask of
  generated tokens (crop turns carry no loss) and each rollout's images in order of appearance (view, then
  crops).
* Those images reach the training forward through TRL's tool-image branch (it processes them with the image
  processor and marks their pad tokens in the whole sequence), which TRL enters when the trainer has tools:
  :data:`CROP_TOOL` is that marker, the crops themselves are served by the agent. A batch whose image tokens
  and features do not match would be trained without pixels by TRL; here it is an error.
* The reward is two TRL reward functions, ``answer`` (``R_ans``) and ``crop_cost`` (``-C_tool``), so TRL logs
  each part (``rewards/answer/mean``, ``rewards/crop_cost/mean``) and their sum ``reward``. The rollout
  metrics are logged beside them every step: ``crops/call_rate``, ``crops/per_call``, ``crops/rtr``,
  ``crops/invalid_rate``, the decision distribution against the labels (``decision/needed_cropped``...,
  ``decision/accuracy``), ``rollouts/well_formed``, ``rollouts/turns`` and ``rollouts/token_drift``.
* :class:`~awares_agent.training.guards.CallRateGuard` watches ``crops/call_rate``.

The private methods overridden are TRL 1.16's (pinned in ``pyproject.toml``); the CPU tests exercise them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import datasets
import torch
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation

from awares_agent.config import AgentConfig
from awares_agent.errors import ConfigError
from awares_agent.evals.schema import EvalSample
from awares_agent.training.config import AwaresGRPOConfig
from awares_agent.training.guards import CallRateGuard
from awares_agent.training.rewards import AnswerSimilarity, CropCost, make_similarity
from awares_agent.training.rollouts import Episode, RolloutError, RolloutRunner, VLLMTurnBackend
from awares_agent.training.sft import freeze_vision_tower

__all__ = ["CROP_TOOL", "AwaresGRPOTrainer", "grpo_dataset", "reward_functions"]

logger = logging.getLogger(__name__)

_DECISIONS = ("needed_cropped", "needed_direct", "not_needed_cropped", "not_needed_direct")


def get_crops(crops: list[str]) -> str:
    """Request high-resolution crops of the image by region id.

    The marker that routes the rollouts' crop images through TRL's tool-image forward; AwaRes rollouts never
    call it (the agent graph serves the crops).

    Args:
        crops: the region ids.
    """
    raise RolloutError("get_crops is served by the AwaRes agent graph, not by TRL")


CROP_TOOL = get_crops


def grpo_dataset(samples: Sequence[EvalSample]) -> datasets.Dataset:
    """The prompt dataset TRL samples from: one row per sample (its ``prompt`` and ``sample`` index).

    The images stay with the samples (the rollouts start from their originals), not in the dataset, so TRL
    does not render or process them itself.
    """
    return datasets.Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": s.question}] for s in samples],
            "sample": list(range(len(samples))),
        }
    )


def reward_functions(similarity: AnswerSimilarity, cost: CropCost) -> list[Any]:
    """TRL reward functions ``answer`` (``R_ans``) and ``crop_cost`` (``-C_tool``); their sum is ``R``.

    Both read the rollouts (``episode``) and their samples (``rollout_sample``) that the trainer's generation
    hands TRL beside the completions. ``|C|`` counts the crops requested: those served, plus one for each
    malformed crop call (a call to the tool all the same, so it is not free).
    """

    def answer(*, episode: list[Episode], rollout_sample: list[EvalSample], **_: Any) -> list[float]:
        return [
            similarity(e.result.answer, s.answers, question=s.question, metric=s.metric)
            for e, s in zip(episode, rollout_sample, strict=True)
        ]

    def crop_cost(*, episode: list[Episode], rollout_sample: list[EvalSample], **_: Any) -> list[float]:
        return [
            -cost(needs_crop=s.needs_crop, crops=e.requested_crops)
            for e, s in zip(episode, rollout_sample, strict=True)
        ]

    return [answer, crop_cost]


class AwaresGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` on AwaRes rollouts, with the crop-cost reward and the call-rate guard.

    Args:
        model: the policy (loaded by :func:`~awares_agent.training.models.load_for_training`); with
            ``beta > 0`` TRL loads the KL reference from the same checkpoint.
        args: the configuration.
        samples: the training samples (original image, question, answers, ``needs_crop`` label).
        processing_class: the model's processor.
        agent: how rollouts run (protocol, crop set, system prompt); ``args.crop_rounds`` sets the rounds.
        similarity: ``R_ans`` (default: from ``args.similarity``).
        eval_samples: samples for TRL's periodic evaluation (optional).
        callbacks: more ``transformers`` callbacks.
    """

    def __init__(
        self,
        model: Any,
        args: AwaresGRPOConfig,
        *,
        samples: Sequence[EvalSample],
        processing_class: Any,
        agent: AgentConfig,
        similarity: AnswerSimilarity | None = None,
        eval_samples: Sequence[EvalSample] | None = None,
        callbacks: list[Any] | None = None,
    ) -> None:
        if not samples:
            raise ConfigError("GRPO needs at least one training sample")
        self._samples = {"train": list(samples), "eval": list(eval_samples or [])}
        cost = CropCost(args.alpha_miss, args.alpha_use, args.crop_cost)
        similarity = similarity or make_similarity(args.similarity)
        if args.freeze_vision_tower:
            freeze_vision_tower(model)
        self.guard = CallRateGuard(
            low=args.guard_low, high=args.guard_high, action=args.guard_action, patience=args.guard_patience
        )
        super().__init__(
            model=model,
            reward_funcs=reward_functions(similarity, cost),
            args=args,
            train_dataset=grpo_dataset(samples),
            eval_dataset=grpo_dataset(eval_samples) if eval_samples else None,
            processing_class=processing_class,
            callbacks=[self.guard, *(callbacks or [])],
        )
        collective = args.vllm_mode == "server" or args.vllm_tensor_parallel_size > 1
        if self.use_vllm and collective and self.accelerator.num_processes > 1:
            raise ConfigError(
                "vLLM's server mode and tensor parallelism make every generation call collective across "
                "processes, which per-turn agent rollouts cannot keep in step: with several processes use "
                "--vllm_mode colocate --vllm_tensor_parallel_size 1"
            )
        self.agent_config = agent.model_copy(update={"max_rounds": args.crop_rounds})
        # TRL sends images that arrive during generation through its tool-image forward only when the trainer
        # has tools; the crops are served by the agent, this marker is never called.
        self.tools = [CROP_TOOL]
        self._standalone_tools = []
        self._runner: RolloutRunner | None = None
        self._rows: list[dict[str, Any]] = []
        self._warned_drift = False

    # --- generation ---------------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._rows = inputs  # _generate needs the rows (their samples), TRL passes it the prompts only
        output = super()._generate_and_score_completions(inputs)
        if "pixel_values" not in output:
            raise RolloutError(
                "the rollouts' image tokens do not match their images, so TRL dropped every image of the "
                "batch; the policy would train blind (a truncated turn? raise --max_completion_length)"
            )
        return output

    def _generate(self, prompts: list[Any]) -> tuple[Any, ...]:
        mode = "train" if self.model.training else "eval"
        samples = [self._samples[mode][row["sample"]] for row in self._rows]
        if self.use_vllm and self.state.global_step != self._last_loaded_step:
            self.vllm_generation.sync_weights()  # vLLM generates with the weights of this step
            self._last_loaded_step = self.state.global_step
        gather = self.args.ds3_gather_for_generation and not self.use_vllm  # vLLM holds its own weights
        with unwrap_model_for_generation(
            self.model_wrapped, self.accelerator, gather_deepspeed3_params=gather
        ) as policy:
            episodes = self._rollouts(policy).run(samples)
        self._log_rollouts(episodes, samples, mode)
        prompt_ids = [e.prompt_ids for e in episodes]
        completion_ids = [e.completion_ids for e in episodes]
        tool_mask = [e.model_mask for e in episodes]
        completions = [[{"role": "assistant", "content": e.text}] for e in episodes]
        images = [e.images for e in episodes]
        extra = {"episode": episodes, "rollout_sample": samples}
        lengths = torch.tensor([sum(m) for m in tool_mask], device=self.accelerator.device, dtype=torch.float)
        lengths = self.accelerator.gather(lengths)
        self.state.num_input_tokens_seen += sum(
            len(p) + len(c) for p, c in zip(prompt_ids, completion_ids, strict=True)
        )
        self._metrics[mode]["completions/mean_length"].append(lengths.mean().item())
        self._metrics[mode]["completions/max_length"].append(lengths.max().item())
        # `images` twice: TRL's forward takes the tool-image branch when any rollout brought images.
        return prompt_ids, completion_ids, tool_mask, completions, None, extra, images, images

    def _rollouts(self, policy: Any) -> RolloutRunner:
        """The rollout runner on ``policy`` (built once; rebuilt if the unwrapped model object changes).

        Turns are generated by the transformers backend on the policy itself, or with ``use_vllm`` by TRL's
        vLLM engine (:class:`~awares_agent.training.rollouts.VLLMTurnBackend`), whose weights are synced
        once per step (in :meth:`_generate`).
        """
        if self._runner is None or self._runner.backend.model is not policy:
            from awares_agent.backends.transformers_backend import TransformersBackend

            options: dict[str, Any] = {
                "max_new_tokens": self.args.max_completion_length,
                "max_batch_size": self.args.rollout_batch,
                "batch_wait_ms": 20.0,
                "model_name": str(getattr(policy, "name_or_path", "") or "policy"),
            }
            if self.use_vllm:
                backend: TransformersBackend = VLLMTurnBackend(
                    policy, self.processing_class, self._vllm_turns, **options
                )
            else:
                backend = TransformersBackend(
                    policy,
                    self.processing_class,
                    do_sample=True,
                    temperature=self.args.temperature,
                    top_p=self.args.top_p,
                    **options,
                )
            policy.train()  # the backend sets eval mode; the runner switches it per generation
            self._runner = RolloutRunner(backend, self.agent_config, concurrency=self.args.rollout_batch)
        return self._runner

    def _vllm_turns(self, prompts: list[list[int]], images: list[list[Any]] | None) -> list[list[int]]:
        """One sampled turn per prompt from TRL's vLLM engine (TRL's temperature, top-p, top-k...)."""
        _, completion_ids, _, _ = self.vllm_generation.generate(
            prompts=prompts, images=images, num_generations=1
        )
        return completion_ids

    def _log_rollouts(self, episodes: Sequence[Episode], samples: Sequence[EvalSample], mode: str) -> None:
        """Log the rollout metrics (summed over processes) into TRL's metrics of this step."""
        counts = {d: 0.0 for d in _DECISIONS}
        labelled = 0
        for episode, sample in zip(episodes, samples, strict=True):
            if sample.needs_crop is None:
                continue
            labelled += 1
            needed = "needed" if sample.needs_crop else "not_needed"
            key = f"{needed}_{'cropped' if episode.called else 'direct'}"
            counts[key] += 1
        called = [e for e in episodes if e.called]
        sums = [
            float(len(episodes)),
            float(len(called)),
            float(sum(e.crops for e in called)),
            float(sum(e.result.rtr for e in episodes)),
            float(sum(e.invalid_calls > 0 for e in episodes)),
            float(sum(e.well_formed for e in episodes)),
            float(sum(e.turns for e in episodes)),
            float(sum(e.drift for e in episodes)),
            float(labelled),
            *counts.values(),
        ]
        total = (
            self.accelerator.gather(torch.tensor(sums, device=self.accelerator.device)[None]).sum(0).tolist()
        )
        n, n_called, n_crops, rtr, invalid, well, turns, drift, n_labelled, *decisions = total
        metrics = self._metrics[mode]
        metrics["crops/call_rate"].append(n_called / n)
        metrics["crops/per_call"].append(n_crops / n_called if n_called else 0.0)
        metrics["crops/rtr"].append(rtr / n)
        metrics["crops/invalid_rate"].append(invalid / n)
        metrics["rollouts/well_formed"].append(well / n)
        metrics["rollouts/turns"].append(turns / n)
        metrics["rollouts/token_drift"].append(drift / turns if turns else 0.0)
        for name, value in zip(_DECISIONS, decisions, strict=True):
            metrics[f"decision/{name}"].append(value / n_labelled if n_labelled else 0.0)
        if n_labelled:
            right = decisions[0] + decisions[3]
            metrics["decision/accuracy"].append(right / n_labelled)
        if drift and not self._warned_drift:
            self._warned_drift = True
            logger.warning(
                "%d generated turn(s) re-rendered to other tokens than were sampled; they are not trained "
                "(rollouts/token_drift counts them)",
                int(drift),
            )

    def keep_best(self) -> str | None:
        """After :meth:`train`: if the call-rate guard stopped the run, put back the weights of the saved
        checkpoint with the best mean reward and return its path (``None``: the final weights stay)."""
        if not (self.guard.stopped and self.guard.best_checkpoint):
            return None
        from awares_agent.training.models import keep_checkpoint

        keep_checkpoint(self, self.guard.best_checkpoint)
        return self.guard.best_checkpoint

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().train(*args, **kwargs)
        finally:
            if self._runner is not None:
                self._runner.close()
