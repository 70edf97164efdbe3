"""The server's Prometheus metrics, served at ``/metrics``.

==============================================  =========  =============================================
metric                                          type       labels / meaning
==============================================  =========  =============================================
``awares_serve_requests_total``                 counter    ``route``: awares, passthrough, refused, other
``awares_serve_errors_total``                   counter    ``code``: the error's code (``invalid_json``,
                                                           ``upstream_timeout``, ``client_disconnected``...)
``awares_serve_request_duration_seconds``       histogram  ``route``; until the response is complete
``awares_serve_rtr``                            histogram  the retained token ratio of each AwaRes query
``awares_serve_visual_tokens_sent_total``       counter    visual tokens sent upstream by AwaRes queries
``awares_serve_visual_tokens_full_total``       counter    what their full-resolution images would cost
``awares_serve_visual_tokens_saved_total``      counter    full minus sent, per query where positive
``awares_serve_model_calls_total``              counter    upstream calls made by AwaRes queries
``awares_serve_stream_stray_total``             counter    streamed turns that were not the answer
``awares_serve_in_flight``                      gauge      requests being served
==============================================  =========  =============================================

Each app has a registry of its own (no process-wide state, so tests build several apps in one process). With
several worker processes (``--workers N``) the values live in ``PROMETHEUS_MULTIPROC_DIR`` (``awares serve``
sets it) and ``/metrics`` adds up every worker's, as the Prometheus client's multiprocess mode does.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from awares_agent.agent import AskResult

__all__ = ["MULTIPROCESS_ENVIRONMENT", "ServeMetrics"]

#: Where the Prometheus client keeps the values of several processes.
MULTIPROCESS_ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, float("inf"))
_RTR_BUCKETS = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.5, 2.0, float("inf"))


class ServeMetrics:
    """The metrics of one server app (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("awares_serve_requests", "requests served, by route", ["route"], registry=r)
        self.errors = Counter(
            "awares_serve_errors", "requests that failed, by error code", ["code"], registry=r
        )
        self.latency = Histogram(
            "awares_serve_request_duration_seconds",
            "seconds until the response is complete, by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rtr = Histogram(
            "awares_serve_rtr", "retained token ratio of AwaRes queries", buckets=_RTR_BUCKETS, registry=r
        )
        self.sent_tokens = Counter(
            "awares_serve_visual_tokens_sent", "visual tokens sent upstream by AwaRes queries", registry=r
        )
        self.full_tokens = Counter(
            "awares_serve_visual_tokens_full",
            "visual tokens the full-resolution images of AwaRes queries would cost",
            registry=r,
        )
        self.saved_tokens = Counter(
            "awares_serve_visual_tokens_saved", "visual tokens saved by AwaRes queries", registry=r
        )
        self.model_calls = Counter(
            "awares_serve_model_calls", "upstream calls made by AwaRes queries", registry=r
        )
        self.stray = Counter(
            "awares_serve_stream_stray", "streamed turns whose text was not all the answer", registry=r
        )
        self.in_flight = Gauge(
            "awares_serve_in_flight", "requests being served", registry=r, multiprocess_mode="livesum"
        )

    def query(self, result: AskResult) -> None:
        """Count one AwaRes query's visual tokens, RTR and upstream calls."""
        self.rtr.observe(result.rtr)
        self.sent_tokens.inc(result.visual_tokens)
        self.full_tokens.inc(result.full_tokens)
        self.saved_tokens.inc(max(0, result.full_tokens - result.visual_tokens))
        self.model_calls.inc(result.trajectory.calls)

    def exposition(self) -> tuple[bytes, str]:
        """The text ``/metrics`` serves and its content type (every worker's, in multiprocess mode)."""
        if os.environ.get(MULTIPROCESS_ENVIRONMENT):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    @staticmethod
    def process_exited(pid: int) -> None:
        """Drop a worker's live values (its in-flight gauge) once it has stopped, in multiprocess mode."""
        if os.environ.get(MULTIPROCESS_ENVIRONMENT):
            multiprocess.mark_process_dead(pid)
