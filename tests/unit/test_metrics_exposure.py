"""/metrics is served on each role's internal port only: no public app has the route, and the
gateway's nginx configuration names no metrics port."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from gateway import render
from services.checkout.bootstrap import create_app as checkout_app
from services.checkout.config import Settings as CheckoutSettings
from services.order.bootstrap import create_app as order_app
from services.order.config import Settings as OrderSettings
from services.sandbox.bootstrap import create_app as sandbox_app
from services.sandbox.config import Settings as SandboxSettings
from shared import metrics


def paths(app: FastAPI) -> set[str]:
    return {route.path for route in app.routes if isinstance(route, APIRoute)}


def test_no_public_app_serves_metrics() -> None:
    apps = (
        order_app(OrderSettings()),
        checkout_app(CheckoutSettings()),
        sandbox_app(SandboxSettings()),
    )
    assert all("/metrics" not in paths(app) for app in apps)


def test_the_gateway_configuration_names_no_metrics_port() -> None:
    config = render.render(render.settings({}))
    assert "/metrics" not in config
    assert not [port for port in metrics.DEFAULT_PORTS.values() if f":{port}" in config]
