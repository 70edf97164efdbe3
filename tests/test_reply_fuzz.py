"""Randomised hostile replies through the real agent: only typed errors escape, every result serialises.

Fixed seeds, so a failure here reproduces exactly (see ``reply_fuzz.py`` for the generators). The counts are
what CI runs; ``benchmarks/bench_reliability.py`` runs more and prints the figures for the README.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from reply_fuzz import FuzzStats, fuzz_cli, fuzz_http, fuzz_inprocess

PROTOCOLS = ["json", "awares-text"]


def check(stats: FuzzStats, replies: int) -> None:
    assert stats.replies >= replies
    assert stats.escapes == [], f"{len(stats.escapes)} escapes, first: {stats.escapes[:5]}"
    # The generators must really reach every outcome, or the suite proves nothing.
    assert stats.answered > stats.queries // 10
    assert sum(stats.typed_errors.values()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ten_thousand_in_process_replies(protocol: str) -> None:
    stats = fuzz_inprocess(protocol, 10_000, seed=12)
    check(stats, 10_000)
    for kind in ("invalid_text", "redacted", "invalid_tool_call", "no_answer", "budget"):
        assert stats.recorded[kind] > 0, kind


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_replies_through_the_openai_adapter(protocol: str) -> None:
    stats = fuzz_http(protocol, 2_000, seed=12)
    check(stats, 2_000)
    assert {"BackendResponseError", "BackendHTTPError"} <= set(stats.typed_errors)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_command_line_never_raises(protocol: str, tmp_path: Path) -> None:
    path = tmp_path / "page.png"
    Image.new("RGB", (320, 240), "white").save(path)
    stats = fuzz_cli(protocol, 60, str(path), seed=12)
    assert stats.escapes == [], stats.escapes[:3]
    assert stats.answered > 0 and sum(stats.typed_errors.values()) > 0
