"""Served AwaRes queries appended to a collection run folder (``--trajectories DIR``), as ``awares collect``
writes one.

The folder is an ordinary run folder (:mod:`awares_agent.collect.command`): shard folders written by the run
engine's :class:`~awares_agent.engine.ShardWriter`, and ``images/``, the content-addressed image store the
trajectories reference. Each served query is a :class:`~awares_agent.collect.pipeline.CollectedRow` of mode
``rollout`` (on-policy, not judged: no ground truth, so ``answers`` is empty), so ``awares collect export
DIR`` turns the traffic into a TRL-ready dataset, and ``awares train`` can read it.

A shard folder has one writer at a time (it holds a lock), so each worker process of a server takes its own:
worker ``k`` of ``N`` writes ``shard-k-of-N``, the first one free, and draws its queries' ids so that they
belong to that shard. Readers read every shard folder of the run. Replicas on other machines each need a
folder of their own (merge them with ``awares collect merge``).

Nothing about the client is written: no key, no address, no header. The row's ``teacher`` is the upstream
model; the image's source is recorded as ``<bytes>``.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from awares_agent.agent import AskResult
from awares_agent.collect.command import IMAGES
from awares_agent.collect.pipeline import CollectedRow
from awares_agent.engine import ShardSpec, ShardWriter
from awares_agent.errors import ConfigError
from awares_agent.trajectory import TrajectoryLabels

__all__ = ["TrajectoryLog"]


class TrajectoryLog:
    """The served queries of one worker process, appended to a run folder's shard.

    Args:
        root: the run folder (created if needed).
        workers: the server's worker processes (how many shards the folder is split into).

    Raises:
        ConfigError: every shard of ``workers`` is taken by another process (another server on the folder).
    """

    def __init__(self, root: str | Path, *, workers: int = 1) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._writer = self._claim(workers)

    @property
    def images(self) -> Path:
        """The run folder's images: the root of the agent's image store."""
        return self.root / IMAGES

    @property
    def shard(self) -> ShardSpec:
        """The shard this process writes."""
        return self._writer.shard

    def _claim(self, workers: int) -> ShardWriter:
        for index in range(1, workers + 1):
            try:
                return ShardWriter(self.root, shard=ShardSpec(index, workers))
            except ConfigError:  # its lock is held: another worker's
                continue
        raise ConfigError(
            f"every shard of {self.root} (shard-1..{workers}-of-{workers}) is being written by another "
            "process; give each server (replica) a --trajectories folder of its own"
        )

    def new_id(self) -> str:
        """A fresh request id that belongs to this process's shard (on average ``workers`` draws)."""
        while True:
            candidate = uuid.uuid4().hex
            if self._writer.shard.contains(candidate):
                return candidate

    async def append(self, request_id: str, result: AskResult, *, question: str) -> None:
        """Append one served query (durably, off the event loop).

        Args:
            request_id: the id from :meth:`new_id`.
            result: the query's result.
            question: the question as the agent was asked it.
        """
        trajectory = result.trajectory
        labels = TrajectoryLabels(teacher=trajectory.model)
        row = CollectedRow(
            id=request_id,
            mode="rollout",
            status="ok",
            question=question,
            answers=[],
            metric="exact",
            teacher=trajectory.model,
            trajectory=trajectory.model_copy(update={"labels": labels}),
        )
        await asyncio.to_thread(self._writer.write, request_id, row)

    def close(self) -> None:
        """Release the shard (its lock)."""
        self._writer.close()
