"""What GET /metrics reports, in Prometheus' text format (prometheus_client): requests by route and
status, their latency, the batch sizes of the forward passes (their sum: the images served) and the
queue; and the
counts summary.json records when the server stops. Requests are counted by ASGI middleware."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    def __init__(self) -> None:
        disable_created_metrics()  # the *_created samples: start times nobody graphs
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mnist_requests", "HTTP requests answered, by route and status", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mnist_request_seconds",
            "Time to answer a request, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Its _count is the forward passes, its _sum the images answered.
        self.batch_size = Histogram(
            "mnist_batch_size", "Images per forward pass", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.queue = Gauge("mnist_queue_images", "Images waiting for the model", registry=self.registry)

    def counts(self) -> dict[str, Any]:
        """For summary.json: requests by status, images served, forward passes and their mean size."""
        by_status: dict[str, int] = {}
        for metric in self.requests.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    status = sample.labels["status"]
                    by_status[status] = by_status.get(status, 0) + int(sample.value)
        batches = self.registry.get_sample_value("mnist_batch_size_count") or 0
        images = int(self.registry.get_sample_value("mnist_batch_size_sum") or 0)
        return {
            "requests": sum(by_status.values()),
            "requests_by_status": dict(sorted(by_status.items())),
            "images": images,
            "batches": int(batches),
            "mean_batch_size": round(images / batches, 2) if batches else None,
        }


class CountRequests:
    """ASGI middleware: every HTTP request's status and time into ServerMetrics. The route is the
    path for the API's own routes, `other` for the rest (so unknown paths cannot grow the labels)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, routes: set[str]):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before answering

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            route = scope["path"] if scope["path"] in self.routes else "other"
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
