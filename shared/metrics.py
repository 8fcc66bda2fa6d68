"""Prometheus metrics for both services, on the process-wide registry."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by service, route, method and status",
    ["service", "route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by service, route and method",
    ["service", "route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASKS_TOTAL = Counter(
    "orchestrator_tasks", "Total number of tasks by final status", ["status"]
)  # exported as orchestrator_tasks_total
TASK_DURATION = Histogram(
    "orchestrator_task_duration_seconds",
    "Task execution duration",
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
WORKFLOWS_ACTIVE = Gauge("orchestrator_workflows_active", "Workflows currently running")
STORE_COMMITS = Counter("store_commits_total", "Group commits written to the store")
EVENTS_PUBLISHED = Counter("events_published_total", "Events published on the bus", ["type"])
WEBSOCKET_CONNECTIONS = Gauge(
    "websocket_connections", "Open event streams (WebSocket and SSE)", ["service", "transport"]
)
WEBHOOK_DELIVERIES = Counter(
    "webhook_deliveries",
    "Webhook delivery attempts by result (delivered, retrying, failed)",
    ["result"],
)  # exported as webhook_deliveries_total
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "webhook_delivery_seconds",
    "Time from sending a webhook to its endpoint's answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOK_OUTBOX_PENDING = Gauge("webhook_outbox_pending", "Webhook deliveries waiting to go out")


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
