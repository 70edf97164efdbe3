"""Support for tests, benchmarks and smoke runs: tiny local vision-language models.

:func:`build_tiny_vlm` writes a tiny Qwen2.5-VL checkpoint and :func:`build_tiny_qwen3_vl` a tiny Qwen3-VL
(random weights, no download, a few seconds on a CPU) that load like real ones; see
:mod:`awares_agent.testing.tiny_vlm`. Their answers mean nothing: they are for checking that a pipeline runs
end to end, offline.
"""

from awares_agent.testing.tiny_vlm import (
    CHAT_TEMPLATE,
    MAX_PIXELS,
    MIN_PIXELS,
    SPECIAL_TOKENS,
    TAG_TOKENS,
    build_tiny_qwen3_vl,
    build_tiny_vlm,
    build_tokenizer,
)

__all__ = [
    "CHAT_TEMPLATE",
    "MAX_PIXELS",
    "MIN_PIXELS",
    "SPECIAL_TOKENS",
    "TAG_TOKENS",
    "build_tiny_qwen3_vl",
    "build_tiny_vlm",
    "build_tokenizer",
]
