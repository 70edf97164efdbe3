"""Support for tests, benchmarks and smoke runs: a tiny local vision-language model.

:func:`build_tiny_vlm` writes a tiny Qwen2.5-VL checkpoint (random weights, no download, a few seconds on a
CPU) that loads like a real one; see :mod:`awares_agent.testing.tiny_vlm`. Its answers mean nothing: it is
for checking that a pipeline runs end to end, offline.
"""

from awares_agent.testing.tiny_vlm import (
    CHAT_TEMPLATE,
    MAX_PIXELS,
    MIN_PIXELS,
    SPECIAL_TOKENS,
    TAG_TOKENS,
    build_tiny_vlm,
    build_tokenizer,
)

__all__ = [
    "CHAT_TEMPLATE",
    "MAX_PIXELS",
    "MIN_PIXELS",
    "SPECIAL_TOKENS",
    "TAG_TOKENS",
    "build_tiny_vlm",
    "build_tokenizer",
]
