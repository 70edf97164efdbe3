"""Incremental detokenization: a turn's growing token ids in, the new pieces of its text out, as generated.

The transformers backend streams a reply by decoding the row's tokens so far each time one is picked and
sending only what is new. Decoding the whole list, with the very call the reply's text is decoded with
(:func:`decode_text`), makes the pieces joined equal that text exactly, whatever the tokenizer merges or
strips; a byte-level BPE token may end halfway through a UTF-8 character (the decode then ends in U+FFFD),
so such a piece is held back until the character is complete. The cost is one decode of at most
``max_new_tokens`` ids per generated token.

Importing this module needs neither torch nor transformers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from awares_agent.backends.base import TextSink

__all__ = ["IncrementalDetokenizer", "decode_text"]

logger = logging.getLogger(__name__)

REPLACEMENT = "\ufffd"
"""What a decode ends in when its last token stops inside a multi-byte UTF-8 character."""


def decode_text(tokenizer: Any, tokens: Sequence[int]) -> str:
    """A turn's text from its generated token ids: the stop token and other special tokens dropped.

    Args:
        tokenizer: the model's tokenizer.
        tokens: the generated ids.

    Returns:
        The text, before any tool-call extraction.
    """
    return tokenizer.decode(list(tokens), skip_special_tokens=True)


class IncrementalDetokenizer:
    """Sends each new piece of one turn's text to a sink as its tokens arrive.

    Call :meth:`update` with the turn's tokens so far each time one is generated, then :meth:`finish` with
    the turn's final tokens: the pieces the sink received, joined, are then ``decode_text(tokenizer,
    final)``. The tokens given may also start again from the beginning (a failed batch rerun): nothing is
    sent until their text runs past what was already sent. A sink that raises is dropped (one warning):
    generation, and the other rows of its batch, go on.

    Args:
        tokenizer: the model's tokenizer.
        sink: receives each new piece of text, in order; never an empty string.
        name: the model's name, for the warning log.
    """

    def __init__(self, tokenizer: Any, sink: TextSink, *, name: str = "") -> None:
        self._tokenizer = tokenizer
        self._sink: TextSink | None = sink
        self._name = name
        self._sent = ""

    def update(self, tokens: Sequence[int]) -> None:
        """Send the new text of ``tokens``, the turn's tokens so far, unless it ends inside a character.

        Args:
            tokens: every token the turn has generated so far, the newest last.
        """
        text = decode_text(self._tokenizer, tokens)
        if not text.endswith(REPLACEMENT):
            self._send(text)

    def finish(self, tokens: Sequence[int]) -> None:
        """Send whatever of the final text is still unsent (a trailing U+FFFD the model really ended on).

        Args:
            tokens: the turn's generated tokens, as the reply is decoded from.
        """
        text = decode_text(self._tokenizer, tokens)
        if not text.startswith(self._sent):
            # A rerun that sampled differently from the failed run, or a tokenizer whose decode of a prefix
            # is not a prefix of the whole decode (one that cleans up spaces before punctuation, say).
            logger.warning(
                "%s: the streamed text (%d characters) is not a prefix of the reply's text; the reply is "
                "authoritative",
                self._name,
                len(self._sent),
            )
            return
        self._send(text)

    def _send(self, text: str) -> None:
        # A text that does not extend what was sent (a rerun catching up, or a decode that rewrote its end)
        # sends nothing: what was sent cannot be taken back, so wait until the text extends it again.
        if len(text) <= len(self._sent) or not text.startswith(self._sent):
            return
        piece, self._sent = text[len(self._sent) :], text
        if self._sink is None:
            return
        try:
            self._sink(piece)
        except Exception:  # the sink is the caller's code: it must not break the batch it runs in
            logger.warning(
                "%s: on_text raised; no more text is streamed for this turn (the reply is unaffected)",
                self._name,
                exc_info=True,
            )
            self._sink = None
