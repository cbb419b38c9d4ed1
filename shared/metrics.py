"""Prometheus metrics: a process serves its default registry on ``METRICS_PORT`` when set.

Services define their metric objects in their own ``metrics.py`` (module-level metric objects
are declarations, not connections: nothing is served until :func:`serve` is called).
"""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

log = logging.getLogger(__name__)


def serve(port: int | None, host: str = "127.0.0.1") -> None:
    """Expose ``/metrics`` on ``host:port`` from a daemon thread; ``None`` or 0 serves nothing."""
    if not port:
        return
    start_http_server(port, addr=host)
    log.info("metrics served", extra={"port": port})
