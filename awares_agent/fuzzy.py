"""Approximate string search shared by the offline reader and the OCR grounder."""

from __future__ import annotations


def substring_distance(pattern: str, text: str, *, last: bool = False) -> tuple[int, int, int]:
    """The smallest edit distance between ``pattern`` and any substring of ``text`` (Sellers' algorithm).

    Args:
        pattern: what to look for.
        text: where to look.
        last: among equally good substrings, take the one ending last (default: the one ending first).

    Returns:
        ``(distance, start, end)`` of the best substring ``text[start:end]``.
    """
    n = len(text)
    previous = [0] * (n + 1)  # an empty pattern matches anywhere at no cost
    starts = list(range(n + 1))
    for i, char in enumerate(pattern, start=1):
        current = [i] + [0] * n
        current_starts = [0] * (n + 1)
        for j in range(1, n + 1):
            best, start = previous[j - 1] + (char != text[j - 1]), starts[j - 1]
            if previous[j] + 1 < best:
                best, start = previous[j] + 1, starts[j]
            if current[j - 1] + 1 < best:
                best, start = current[j - 1] + 1, current_starts[j - 1]
            current[j], current_starts[j] = best, start
        previous, starts = current, current_starts
    end = min(range(n + 1), key=lambda j: (previous[j], -j if last else j))
    return previous[end], starts[end], end
