"""Per-run choices for the AwaRes graph: LangGraph run context (``context_schema``), not new objects.

A graph is compiled once per agent (one backend, one :class:`~awares_agent.config.AgentConfig`). What may
differ from one query to the next reaches it as :class:`RunOptions`, passed as ``context=`` to ``invoke``,
``ainvoke`` or ``stream`` (or ``options=`` to :meth:`awares_agent.agent.AwaResAgent.ask`): a crop request
forced on the first turn (the evaluation policies ``oracle``, ``all-crops`` and ``random``), a scripted final
answer (the collector's label trajectories), and overrides of the crop rounds, the visual-token budget and
the view (``low-res``, ``full-res``). Without a context a query runs exactly as the configuration says.

The context is not checkpointed (LangGraph keeps it for one run only); the limits a query started under are
recorded in its state, so a resumed thread keeps them. See :meth:`~awares_agent.agent.AwaResAgent.resume`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from awares_agent.config import MAX_ROUNDS
from awares_agent.errors import ConfigError
from awares_agent.images import ViewSpec


class FromConfig:
    """The type of :data:`FROM_CONFIG`: "not overridden, take the agent configuration's value"."""

    def __reduce__(self) -> str:
        # Copied or pickled, it stays the one module-level instance.
        return "FROM_CONFIG"

    def __repr__(self) -> str:
        return "FROM_CONFIG"


#: The default of :attr:`RunOptions.max_rtr`: the configuration's budget. ``None`` there means *no* budget,
#: as it does in :class:`~awares_agent.config.AgentConfig`, so "not given" needs a value of its own.
FROM_CONFIG: Final = FromConfig()


@dataclass(frozen=True)
class RunOptions:
    """Choices for one query, given to the compiled graph as its run context.

    Every field defaults to "as the agent configuration says", so ``RunOptions()`` (or no context at all)
    runs the query unchanged.

    Args:
        crops: region ids (or names) requested on the model's first turn instead of asking the model: the
            turn is written as the protocol's own call (``GET_CROPS: ['0', '5']`` for ``awares-text``, a
            native tool call for ``json``) and recorded in the trajectory as a model turn, but no backend is
            called for it, so it adds nothing to the trajectory's ``calls`` or usage. ``None``: the model
            decides. A forced request is the first crop round: the run must allow one (``max_rounds >= 1``).
        answer: a scripted final answer: every turn that would ask the model for its answer records this
            text instead, again without calling the backend (the collector's label trajectories). ``None``:
            the model answers.
        max_rounds: crop rounds allowed in this query (0 to :data:`~awares_agent.config.MAX_ROUNDS`),
            instead of the configuration's.
        max_rtr: the visual-token budget of this query as a retained token ratio, or ``None`` for no budget
            (forced crops are usually run so: a policy's crops are never trimmed); by default
            (:data:`FROM_CONFIG`) the configuration's.
        view: how the first view is made, instead of the configuration's (``ViewSpec(scale=1.0)``: the
            full-resolution image, the ``full-res`` policy).
        stream_text: send each model turn's text as it is generated, as ``token`` events of the run's
            custom stream, where the backend can
            (:class:`~awares_agent.backends.base.StreamingChatBackend`); other backends answer whole.
            :meth:`AwaResAgent.stream <awares_agent.agent.AwaResAgent.stream>` sets it.

    Raises:
        ConfigError: an empty crop list or answer, or a value out of range.
    """

    crops: tuple[str, ...] | None = None
    answer: str | None = None
    max_rounds: int | None = None
    max_rtr: float | FromConfig | None = field(default=FROM_CONFIG)
    view: ViewSpec | None = None
    stream_text: bool = False

    def __post_init__(self) -> None:
        if self.crops is not None:
            crops = (self.crops,) if isinstance(self.crops, str) else tuple(self.crops)
            if not crops or not all(isinstance(c, str) and c.strip() for c in crops):
                raise ConfigError(
                    f"RunOptions.crops must name at least one region (e.g. ('0', '5')), got {self.crops!r}; "
                    "pass crops=None to let the model decide"
                )
            # Frozen: normalise a list (or one id) to the tuple the field is documented as.
            object.__setattr__(self, "crops", crops)
        if self.answer is not None and (not isinstance(self.answer, str) or not self.answer.strip()):
            raise ConfigError(f"RunOptions.answer must be a non-empty string, got {self.answer!r}")
        rounds = self.max_rounds
        if rounds is not None and (
            isinstance(rounds, bool) or not isinstance(rounds, int) or not 0 <= rounds <= MAX_ROUNDS
        ):
            raise ConfigError(f"RunOptions.max_rounds must be an integer in 0..{MAX_ROUNDS}, got {rounds!r}")
        budget = self.max_rtr
        if not isinstance(budget, FromConfig) and budget is not None:
            if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
                raise ConfigError(f"RunOptions.max_rtr must be a number > 0 or None, got {budget!r}")
            if not math.isfinite(budget):
                raise ConfigError("RunOptions.max_rtr must be finite; pass max_rtr=None for no budget")
        if self.view is not None and not isinstance(self.view, ViewSpec):
            raise ConfigError(f"RunOptions.view must be a ViewSpec, got {type(self.view).__name__}")
