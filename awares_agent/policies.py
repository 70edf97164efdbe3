"""Crop policies: who chooses the crops of a query, as run options for one compiled agent.

==========  =================================================================================================
awares      the model decides whether and where to crop (the method)
low-res     the low-resolution view only: no crop round
full-res    the full-resolution image only (the view at scale 1.0, no crop round): the accuracy ceiling of
            the model, at RTR 1.0
all-crops   every region of the crop set (``all`` excluded) is sent, then the model answers
random      as many crops as ``awares`` took on the same sample, from random regions (seeded per sample)
oracle      the cheapest crops covering the sample's evidence box
            (:func:`awares_agent.tools.box_mapping.crops_covering`)
==========  =================================================================================================

A policy is not a model nor an agent of its own: :func:`policy_options` turns it, for one sample, into the
:class:`~awares_agent.graphs.context.RunOptions` that the agent's one compiled graph runs the query with.
A forced-crop policy (``all-crops``, ``random``, ``oracle``) writes its crop request as the model's first
turn, in the protocol's own form, and runs with no budget (a policy's crops are never trimmed) and at least
one crop round; everything after (serving the crops, the model's answer, token accounting, the trajectory) is
the ordinary agent. Where a forced policy has no crops to force (``oracle`` on a sample without a box,
``random`` where ``awares`` took none), the first turn is the model's own, with the tool offered, as for
``awares``.

Evaluation (:mod:`awares_agent.evals.runner`) and collection (:mod:`awares_agent.collect.pipeline`) both
use this module; it takes the sample's id and box as plain values, so it sits below both.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from awares_agent.config import AgentConfig
from awares_agent.errors import ConfigError
from awares_agent.graphs.context import RunOptions
from awares_agent.images import ViewSpec
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import ALL, crop_set

#: Every policy, in report order.
POLICIES = ("awares", "low-res", "full-res", "all-crops", "random", "oracle")

#: The policies whose first turn is a crop request made for the model.
FORCED_POLICIES = ("all-crops", "random", "oracle")


def check_policy(policy: str) -> None:
    """Raise :class:`ConfigError` unless ``policy`` is one of :data:`POLICIES`."""
    if policy not in POLICIES:
        raise ConfigError(f"unknown policy {policy!r}: choose from {', '.join(POLICIES)}")


def policy_crops(
    policy: str,
    config: AgentConfig,
    *,
    width: int,
    height: int,
    sample_id: str,
    evidence: Sequence[float] | None = None,
    awares_crops: int | None = None,
    seed: int = 0,
) -> list[str]:
    """The region ids a forced-crop policy requests for one sample (empty for the other policies).

    Args:
        policy: one of :data:`POLICIES`.
        config: the agent configuration (its crop set).
        width: the original image's width in pixels.
        height: the original image's height in pixels.
        sample_id: the sample's id (seeds ``random``, per sample).
        evidence: the sample's evidence box ``[x0, y0, x1, y1]`` in original pixels (``oracle``), if known.
        awares_crops: for ``random``: how many crops ``awares`` took on this sample.
        seed: for ``random``: the run's seed.

    Raises:
        ConfigError: unknown policy, or ``random`` without ``awares_crops``.
    """
    check_policy(policy)
    crops = crop_set(config.crop_set)
    if policy == "oracle":
        return crops_covering(evidence, crops, width, height) if evidence else []
    regions = [r.id for r in crops.regions(width, height) if r.id != ALL]
    if policy == "all-crops":
        return regions
    if policy == "random":
        if awares_crops is None:
            raise ConfigError(
                f"the random policy needs the awares run's crop count for sample {sample_id!r}: run it with "
                "awares (--policy awares,random) or point it at an awares run"
            )
        rng = random.Random(f"{seed}:{sample_id}")
        return rng.sample(regions, min(awares_crops, len(regions)))
    return []


def policy_options(
    policy: str,
    config: AgentConfig,
    *,
    width: int,
    height: int,
    sample_id: str,
    evidence: Sequence[float] | None = None,
    awares_crops: int | None = None,
    seed: int = 0,
) -> RunOptions:
    """The run options of one sample under ``policy``, for an agent built with ``config``.

    Arguments as :func:`policy_crops`.

    Returns:
        ``awares``: the defaults (the configuration as it is). ``low-res``: no crop round. ``full-res``: no
        crop round and the view at scale 1.0. Forced-crop policies: their crop request (see the module
        docstring), no budget, and at least one crop round.

    Raises:
        ConfigError: unknown policy, or ``random`` without ``awares_crops``.
    """
    check_policy(policy)
    if policy == "low-res":
        return RunOptions(max_rounds=0)
    if policy == "full-res":
        return RunOptions(max_rounds=0, view=ViewSpec(scale=1.0))
    if policy in FORCED_POLICIES:
        crops = policy_crops(
            policy,
            config,
            width=width,
            height=height,
            sample_id=sample_id,
            evidence=evidence,
            awares_crops=awares_crops,
            seed=seed,
        )
        # No crops to force: the model's own first turn, as the policies have always run such samples.
        return RunOptions(crops=tuple(crops) or None, max_rounds=max(1, config.max_rounds), max_rtr=None)
    return RunOptions()
