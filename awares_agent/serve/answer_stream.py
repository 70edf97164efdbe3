"""Which of a query's streamed text reaches the client: the final answer, as it is generated, and no more.

The agent streams the text of every model turn (:meth:`~awares_agent.agent.AwaResAgent.astream`'s ``token``
events), and a turn is known to be the answer only once it is over: the first turn may turn out to be a crop
request (``GET_CROPS: ['3']``, or a hermes ``<tool_call>``). An OpenAI stream cannot take text back, so
:class:`AnswerStream` sends a turn's text only where it cannot be the start of a crop request:

* nothing before the turn's first non-blank character (the answer is the turn's text stripped);
* text up to the last whitespace only (a whole word at a time), holding back a tail that could begin the
  protocol's call marker, and redacted (:func:`~awares_agent.redact.redact`) as the stored answer is;
* nothing more of a turn once its text holds a call marker.

When the turn is over, the rest of the answer is sent (what was held back, and the last word), so the text
streamed is the answer the whole response would carry. Where it cannot be (a model that writes a preamble
and then calls the crop tool natively, or a redaction across words), the difference is counted in
:attr:`AnswerStream.stray` and the answer's remainder is still sent where it extends what went out.
"""

from __future__ import annotations

import re

from awares_agent.redact import redact
from awares_agent.untrusted import valid_text

__all__ = ["CALL_MARKERS", "AnswerStream"]

#: Lower-case text that starts a crop request, per tool-call protocol (:mod:`awares_agent.tools.protocols`).
CALL_MARKERS: dict[str, tuple[str, ...]] = {
    "json": ("<tool_call>",),
    "awares-text": ("get_crops", "get crops", "getcrops"),
}

_LAST_WORD = re.compile(r"\s+\S*\Z")


class AnswerStream:
    """Turns a query's agent events into the answer's text pieces for the client.

    Feed it each ``token`` event's text with :meth:`feed`, each ``model`` event with :meth:`turn_over` and the
    ``answer`` event with :meth:`answered`; each returns the text to send now (maybe empty).

    Args:
        protocol: the agent's tool-call protocol (``json`` or ``awares-text``).

    Attributes:
        sent: everything sent so far.
        stray: turns whose text was partly sent and that then turned out not to be the answer (or whose
            answer did not extend what was sent).
    """

    def __init__(self, protocol: str) -> None:
        self._markers = CALL_MARKERS[protocol]
        self._turn = ""  # the current turn's raw text so far
        self._turn_sent = ""  # what of it was sent (redacted)
        self._call = False  # the turn holds a call marker: nothing more of it is sent
        self._done = False
        self.sent = ""
        self.stray = 0

    def feed(self, piece: str) -> str:
        """A new piece of the current turn's text; returns what may be sent now."""
        if self._done:
            return ""
        self._turn += piece
        if self._call:
            return ""
        text = self._turn.lstrip()
        if any(marker in text.lower() for marker in self._markers):
            self._call = True
            return ""
        tail = _LAST_WORD.search(text)
        ready = text[: tail.start()] if tail is not None else ""
        ready = ready[: len(ready) - self._held(ready)]
        safe = redact(valid_text(ready)[0])
        if not safe.startswith(self._turn_sent):
            return ""  # a redaction changed what was sent: the rest waits for the turn's end
        return self._send(safe[len(self._turn_sent) :])

    def turn_over(self, kind: str, text: str | None) -> str:
        """A model turn ended (a ``model`` event): its ``kind`` and its text (as stored). Returns the rest of
        the answer if the turn is the answer."""
        if kind == "answer" and text is not None:
            return self.answered(text.strip())
        if self._turn_sent:
            self.stray += 1
        self._new_turn()
        return ""

    def answered(self, answer: str | None) -> str:
        """The query's answer is known (the ``answer`` event, or an answer turn's end). Returns its rest."""
        if self._done or answer is None:
            self._new_turn()
            return ""
        rest = ""
        if answer.startswith(self._turn_sent):
            rest = answer[len(self._turn_sent) :]
        else:
            self.stray += 1
        self._done = True
        self._new_turn()
        return self._send(rest)

    def _held(self, ready: str) -> int:
        """How many trailing characters of ``ready`` could begin a call marker."""
        lowered = ready.lower()
        return max(
            (k for marker in self._markers for k in range(1, len(marker)) if lowered.endswith(marker[:k])),
            default=0,
        )

    def _send(self, text: str) -> str:
        self._turn_sent += text
        self.sent += text
        return text

    def _new_turn(self) -> None:
        self._turn = ""
        self._turn_sent = ""
        self._call = False
