"""Prometheus metrics at ``/ext/observability/metrics``."""
