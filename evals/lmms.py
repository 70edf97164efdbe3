"""The lmms-eval plugin: ``lmms-eval --model awares`` runs each request through an AwaRes agent.

lmms-eval (0.7) finds third-party models through the ``lmms_eval.models`` entry-point group; awares
registers :func:`manifest` there (``pyproject.toml``), so no fork of lmms-eval is needed. Each
``generate_until`` request is one query of :class:`~awares_agent.agent.AwaResAgent` on the request's image,
under the chosen policy (``awares``, ``low-res``, ``full-res`` or ``all-crops``), and the answer is what
lmms-eval scores. What it cost is reported per sample to lmms-eval's own metrics log, so that its
``results.json`` carries, under ``throughput``, the means ``avg_rtr``, ``avg_visual_tokens``,
``avg_full_tokens``, ``avg_crop_calls`` (the share of samples that received crops), ``avg_crops`` and
``avg_model_calls``, beside its accuracy; and each sample's trajectory can go to a side file
(``trajectories=PATH``, JSON lines keyed by task, split and doc id) that ``awares report`` reads with the
results (:mod:`awares_agent.evals.lmms_results`).

``--model_args`` (comma-separated ``key=value``):

* backend: ``auto`` (default: a server with ``base_url``, a local model with ``model``, else the reader),
  ``reader``, ``openai`` or ``transformers``; base_url, model, api_key_env, timeout, max_retries, device,
  dtype, max_new_tokens, offline: as for ``awares ask``
  (:class:`~awares_agent.backend_factory.BackendOptions`);
* protocol, crop_set, system_prompt (a preset), max_rounds, max_rtr, view_scale, token_rule: the agent's
  (:class:`~awares_agent.config.AgentConfig`);
* policy: ``awares`` (default), ``low-res``, ``full-res`` or ``all-crops`` (``oracle`` and ``random`` need a
  sample's evidence box or an awares run of the same samples, which lmms-eval tasks do not give);
* trajectories: a JSON-lines file each sample's record is appended to as it completes;
* concurrency: queries in flight at once (default: lmms-eval's ``--batch_size``).

A sample whose query fails (an unreadable image, a backend error) is answered with the empty string (so it
is scored wrong, not dropped), logged, and recorded in the side file with its error.

This module needs lmms-eval; install it with ``make setup`` (or see the README: its wheel requires
torchvision, which breaks a CPU torch, so it is installed without its dependencies, which ``awares[lmms]``
lists instead).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from lmms_eval.api.instance import GenerationResult, TokenCounts
from lmms_eval.api.model import lmms
from lmms_eval.models.model_utils.gen_metrics import log_metrics
from loguru import logger
from PIL import Image
from tqdm import tqdm

from awares_agent.agent import AskResult, AwaResAgent
from awares_agent.backend_factory import BackendOptions, make_backend
from awares_agent.config import AgentConfig, checkpoint_options
from awares_agent.errors import AwaresError, ConfigError
from awares_agent.policies import policy_options

#: The name lmms-eval knows the plugin by (``--model awares``).
MODEL_ID = "awares"

#: The policies the plugin runs; the others need what lmms-eval tasks do not give.
LMMS_POLICIES = ("awares", "low-res", "full-res", "all-crops")

#: The agent options ``--model_args`` may set (the rest go to the backend, or are the plugin's own).
AGENT_ARGS = ("protocol", "crop_set", "system_prompt", "max_rounds", "max_rtr", "view_scale", "token_rule")

_TEXT_ARGS = {"model", "base_url", "api_key_env", "device", "dtype", "protocol", "crop_set", "system_prompt",
              "token_rule", "policy", "trajectories", "backend"}  # fmt: skip


def manifest() -> Any:
    """The ``lmms_eval.models`` entry point: ``awares`` as a simple (not chat) lmms-eval model."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.AwaresLMM")


def _text(value: Any) -> str | None:
    """lmms-eval turns ``key=1.5`` into a float and ``key=true`` into a bool; names and paths stay text."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class AwaresLMM(lmms):
    """lmms-eval's view of an AwaRes agent (``--model awares``).

    Args:
        policy: ``awares``, ``low-res``, ``full-res`` or ``all-crops``.
        trajectories: a JSON-lines file each sample's record is appended to (``None``: none written).
        concurrency: queries in flight at once (default: ``batch_size``).
        batch_size: lmms-eval's ``--batch_size``.
        **kwargs: the backend's options (:class:`BackendOptions` fields) and the agent's (:data:`AGENT_ARGS`);
            lmms-eval's own ``device`` and ``max_batch_size`` are accepted (``device`` is the local model's).

    Raises:
        ConfigError: an unknown option, a policy the plugin cannot run, or an invalid configuration.
    """

    is_simple = True

    def __init__(
        self,
        policy: str = "awares",
        trajectories: str | None = None,
        concurrency: int | None = None,
        batch_size: int | str = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        kwargs.pop("max_batch_size", None)
        policy = str(policy)
        if policy not in LMMS_POLICIES:
            raise ConfigError(
                f"policy={policy!r}: the awares lmms-eval model runs {', '.join(LMMS_POLICIES)} (oracle "
                "needs evidence boxes, random an awares run of the same samples: use `awares eval` for those)"
            )
        backend_fields = {f.name for f in fields(BackendOptions)}
        unknown = sorted(set(kwargs) - backend_fields - set(AGENT_ARGS))
        if unknown:
            known = ", ".join(sorted([*backend_fields, *AGENT_ARGS, "policy", "trajectories", "concurrency"]))
            raise ConfigError(f"unknown awares model_args {', '.join(unknown)}; known: {known}")
        values = {k: (_text(v) if k in _TEXT_ARGS else v) for k, v in kwargs.items()}
        backend = BackendOptions(**{k: v for k, v in values.items() if k in backend_fields})
        agent = {k: v for k, v in values.items() if k in AGENT_ARGS}
        if "system_prompt" in agent:
            agent["system_prompt_preset"] = agent.pop("system_prompt")
        recorded = checkpoint_options(backend.model) if backend.kind == "transformers" else {}
        self.config = AgentConfig.from_options(**{**recorded, **agent})
        self.policy = policy
        self.agent = AwaResAgent(make_backend(backend, crop_set=self.config.crop_set), self.config)
        self.backend_options = backend
        self.concurrency = max(1, int(concurrency if concurrency is not None else batch_size))
        self.trajectories = Path(str(trajectories)).expanduser() if trajectories else None
        if self.trajectories is not None:
            self.trajectories.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._rank, self._world_size = 0, 1
        self.batch_size_per_gpu = int(batch_size)

    @property
    def batch_size(self) -> int:
        """lmms-eval's batch size."""
        return self.batch_size_per_gpu

    # --- lmms-eval's requests ------------------------------------------------------------------------

    def generate_until(self, requests: list[Any]) -> list[GenerationResult]:
        """Answer each request through the agent, in order; report its cost per sample.

        Args:
            requests: lmms-eval ``Instance`` s whose ``args`` are ``(context, gen_kwargs, doc_to_visual,
                doc_id, task, split)``.

        Returns:
            The answers (the empty string for a query that failed), with token counts.
        """
        from concurrent.futures import ThreadPoolExecutor

        results: list[GenerationResult | None] = [None] * len(requests)
        with (
            tqdm(total=len(requests), desc="awares", disable=self.rank != 0) as bar,
            ThreadPoolExecutor(max_workers=self.concurrency) as pool,
        ):
            futures = {pool.submit(self._one, request): i for i, request in enumerate(requests)}
            for future, i in futures.items():
                results[i] = future.result()
                bar.update(1)
        return [r if r is not None else GenerationResult(text="") for r in results]

    def _one(self, request: Any) -> GenerationResult:
        context, _gen_kwargs, doc_to_visual, doc_id, task, split = request.args
        key = {"task": task, "split": split, "doc_id": doc_id}
        t0 = time.perf_counter()
        try:
            images = [v for v in _flat(doc_to_visual(self.task_dict[task][split][doc_id])) if v is not None]
            if not images:
                raise ConfigError(f"{task}/{split} doc {doc_id} has no image; AwaRes answers about an image")
            image = images[0]
            width, height = _size(image)
            options = policy_options(
                self.policy, self.config, width=width, height=height, sample_id=str(doc_id)
            )
            result = self.agent.ask(image, str(context), options=options)
        except AwaresError as exc:
            message = f"{type(exc).__name__}: {exc}"
            logger.warning(f"awares: {task}/{split} doc {doc_id} failed: {message}")
            self._record(
                {**key, "policy": self.policy, "error": message, "latency_s": time.perf_counter() - t0}
            )
            return GenerationResult(text="")
        extra = len(images) - 1
        self._record(_record(key, self.policy, result, extra))
        self._log(result)
        usage = result.trajectory.usage
        return GenerationResult(
            text=result.answer or "",
            token_counts=TokenCounts(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens),
        )

    def _log(self, result: AskResult) -> None:
        t = result.trajectory
        latency = max(t.latency_s, 1e-9)
        log_metrics(
            total_elapsed_time=t.latency_s,
            total_gen_tokens=t.usage.completion_tokens,
            avg_speed=t.usage.completion_tokens / latency,
            additional_metrics={
                "rtr": result.rtr,
                "visual_tokens": result.visual_tokens,
                "full_tokens": result.full_tokens,
                "crop_calls": int(bool(result.crops)),
                "crops": len(result.crops),
                "model_calls": t.calls,
            },
        )

    def _record(self, record: dict[str, Any]) -> None:
        if self.trajectories is None:
            return
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self._write_lock, self.trajectories.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        """Not supported: AwaRes answers by generating; choose a ``generate_until`` task."""
        raise ConfigError(
            "the awares lmms-eval model generates answers: it has no loglikelihood; use a generate_until task"
        )

    def generate_until_multi_round(self, requests: list[Any]) -> list[str]:
        """Not supported: each request is one AwaRes query (its own crop rounds included)."""
        raise ConfigError("the awares lmms-eval model runs one query per request: no multi-round tasks")


def _flat(visuals: Any) -> list[Any]:
    if isinstance(visuals, list | tuple):
        return [v for item in visuals for v in _flat(item)]
    return [visuals]


def _size(image: Any) -> tuple[int, int]:
    if isinstance(image, Image.Image):  # what lmms-eval tasks give: its size is known, no copy needed
        return image.size
    from awares_agent.images import open_image

    source = open_image(image)  # a path or bytes: the header only
    return source.width, source.height


def _record(key: dict[str, Any], policy: str, result: AskResult, extra_images: int) -> dict[str, Any]:
    """One sample's line of the side file: its key, cost and whole trajectory."""
    record = {
        **key,
        "policy": policy,
        "answer": result.answer,
        "rtr": result.rtr,
        "visual_tokens": result.visual_tokens,
        "full_tokens": result.full_tokens,
        "crops": [c.region_id for c in result.crops],
        "model_calls": result.trajectory.calls,
        "latency_s": result.latency_s,
        "trajectory": result.trajectory.model_dump(mode="json"),
    }
    if extra_images:
        record["images_ignored"] = extra_images  # AwaRes looks at one image: the request's first
    return record
