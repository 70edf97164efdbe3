"""The run engine: a work function over a dataset, concurrently, resumably, exactly once, into shard folders.

Collection (``awares collect``) and evaluation (``awares eval``) both run on it.

* :mod:`awares_agent.engine.shards`: the on-disk store: :class:`ShardWriter`, :class:`ShardSpec`, the
  index-aware readers (:func:`read_rows`, :func:`read_indexed_rows`, :func:`read_failures`) and :func:`merge`;
* :mod:`awares_agent.engine.runner`: :func:`collect` / :func:`collect_sync` (the concurrent runner), with
  :class:`RetryPolicy` and a progress bar.
"""

from awares_agent.engine.runner import CollectionStats, RetryPolicy, collect, collect_sync
from awares_agent.engine.shards import (
    ShardCorruptError,
    ShardSpec,
    ShardWriter,
    merge,
    read_failures,
    read_indexed_rows,
    read_rows,
)

__all__ = [
    "CollectionStats",
    "RetryPolicy",
    "ShardCorruptError",
    "ShardSpec",
    "ShardWriter",
    "collect",
    "collect_sync",
    "merge",
    "read_failures",
    "read_indexed_rows",
    "read_rows",
]
