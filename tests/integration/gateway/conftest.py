"""A real nginx, rendered from gateway/nginx.conf.template, in front of two stub upstreams."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from deploy.stack import free_port
from gateway import render

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SANDBOX = "http://localhost:18090"


class EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with what it received; ``/api/conflict`` with a problem."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls
    server: Upstream

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._answer()

    def _answer(self) -> None:
        if self.path == "/api/conflict":
            body = {"code": "ORDER_NOT_CANCELABLE", "detail": "Already paid.", "status": 409}
            return self._send(409, "application/problem+json", body)
        received = {
            "upstream": self.server.name,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        return self._send(200, "application/json", received)

    def _send(self, status: int, content_type: str, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-ID", "upstream-own-id")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


class Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), EchoHandler)
        self.name = name

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


@dataclass(frozen=True)
class Gateway:
    url: str
    run_dir: Path


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    order, checkout = Upstream("order"), Upstream("checkout")
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (order, checkout)]
    for thread in threads:
        thread.start()
    try:
        yield order, checkout
    finally:
        for server in (order, checkout):
            server.shutdown()
            server.server_close()


def access_log(gateway: Gateway, containing: str, within: float = 5.0) -> str:
    """The access log once a line with ``containing`` was written (nginx flushes every second)."""
    path = gateway.run_dir / "access.log"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if containing in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"no access log line with {containing!r} within {within} s")


def start_gateway(
    order_upstream: str, checkout_upstream: str, **overrides: str
) -> Iterator[Gateway]:
    """Render the template with these upstreams (and any other variables given), run nginx in
    the foreground, stop it after."""
    if not os.path.exists(NGINX):
        pytest.skip(f"nginx is not installed (looked for {NGINX})")
    run_dir = Path(tempfile.mkdtemp(prefix="gateway-test-"))
    port = free_port()
    values = render.settings(
        {
            "GATEWAY_PORT": f"127.0.0.1:{port}",
            "ORDER_UPSTREAM": order_upstream,
            "CHECKOUT_UPSTREAM": checkout_upstream,
            "RUN_DIR": str(run_dir),
            "SANDBOX_PUBLIC_URL": SANDBOX,
            **overrides,
        }
    )
    conf = run_dir / "nginx.conf"
    conf.write_text(render.render(values))
    render.prepare_run_dir(run_dir)
    process = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(run_dir), "-e", "stderr"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, process)
        yield Gateway(url, run_dir)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(run_dir, ignore_errors=True)


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"nginx exited with {process.returncode}: {stderr}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("nginx did not come up within 10 s")


# Routing tests send many requests from one address: limits out of their way (the limits have
# tests of their own, with the defaults).
UNLIMITED = {
    "GATEWAY_RATE_LIMIT": "100000",
    "GATEWAY_RATE_BURST": "100000",
    "GATEWAY_CONN_LIMIT": "60000",
}


@pytest.fixture(scope="module")
def gateway(upstreams: tuple[Upstream, Upstream]) -> Iterator[Gateway]:
    order, checkout = upstreams
    yield from start_gateway(order.address, checkout.address, **UNLIMITED)


@pytest.fixture(scope="module")
def default_gateway(upstreams: tuple[Upstream, Upstream]) -> Iterator[Gateway]:
    """The gateway as a deployment gets it: every limit at its default."""
    order, checkout = upstreams
    yield from start_gateway(order.address, checkout.address)


@pytest.fixture(scope="module")
def gateway_without_upstreams() -> Iterator[Gateway]:
    """Upstreams on ports where nothing listens: every service is down."""
    yield from start_gateway(f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}", **UNLIMITED)


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=5) as client:
        yield client
