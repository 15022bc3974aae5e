"""Prometheus metrics of one app, in their own registry (tests build several apps).

Names carry their unit (``_seconds``, ``_bytes``, ``_total``), per the architecture notes.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)


class ServiceMetrics:
    """All metrics of the service, registered in a private :class:`CollectorRegistry`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        """Create the metrics in a fresh registry."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "stylize_requests_total",
            "HTTP requests by route and status",
            ["route", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "stylize_request_duration_seconds",
            "HTTP request duration by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "stylize_queue_wait_seconds",
            "Time from submission to the batch starting on the device",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "stylize_batch_size",
            "Images per generator forward",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256),
            registry=r,
        )
        self.inference = Histogram(
            "stylize_inference_seconds",
            "Device time of one batch (transfer, forward, blend)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.codec = Histogram(
            "stylize_codec_seconds",
            "Image decode / encode time",
            ["op"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # Gauges say how several processes add up (service.processes): live processes only.
        self.queue_depth = Gauge(
            "stylize_queue_depth",
            "Requests waiting for the device",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rejected = Counter(
            "stylize_rejected_total",
            "Stylize requests refused or dropped by the runtime",
            ["reason"],
            registry=r,
        )
        self.cache_hits = Counter(
            "stylize_model_cache_hits_total", "Generator cache hits", registry=r
        )
        self.cache_misses = Counter(
            "stylize_model_cache_misses_total", "Generator cache misses", registry=r
        )
        self.cache_evictions = Counter(
            "stylize_model_cache_evictions_total", "Generators evicted from the cache", registry=r
        )
        self.cache_models = Gauge(
            "stylize_model_cache_models",
            "Generators in the cache",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cache_bytes = Gauge(
            "stylize_model_cache_bytes",
            "Device memory held by cached generators",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.model_load = Histogram(
            "stylize_model_load_seconds",
            "Generator load time (store read, checksum, build, move to device)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_load_failures = Counter(
            "stylize_model_load_failures_total",
            "Generator loads that failed, by reason",
            ["reason"],
            registry=r,
        )
        self.streams = Gauge(
            "stylize_event_streams",
            "Event streams (GET /styles/{id}/events) open",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.streams_refused = Counter(
            "stylize_event_streams_refused_total",
            "Event streams refused: too_many_streams (the client's), streams_full (the process's)",
            ["reason"],
            registry=r,
        )
        self.enqueued = Counter(
            "stylize_training_jobs_enqueued_total", "Training jobs enqueued", registry=r
        )

    def render(self) -> bytes:
        """Return the registry in the Prometheus text format."""
        return generate_latest(self.registry)
