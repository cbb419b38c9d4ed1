"""Composition root: the console's pool (approval's schema) and broker connection on the
lifespan's runtime (``shared.runner``), which drains and closes them."""

from __future__ import annotations

from fastapi import FastAPI

from services.ops import web
from services.ops.config import Settings
from services.ops.service import Console
from shared import messaging, runner
from shared.http import add_input_guard, add_request_id
from shared.runner import Runtime


def create_app(settings: Settings) -> FastAPI:
    """The console app; approval's migrations must have run (its tables, the audit's)."""

    async def start(rt: Runtime, app: FastAPI) -> None:
        pool = await rt.pool(settings.db_schema)
        # Its own connection, not rt.broker(): the console declares and consumes nothing.
        broker = await messaging.connect(settings.broker_url)
        rt.closing(broker.close)
        app.state.console = Console(
            pool,
            broker,
            settings.topology(),
            settings.confirm_window_seconds,
            settings.list_limit,
        )
        app.state.settings = settings
        app.state.templates = web.templates()

    app = FastAPI(
        title="ops",
        lifespan=runner.lifespan(settings, "ops", start),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    web.install(app)
    add_input_guard(app, web.refusal)
    add_request_id(app)
    runner.install_operations(app)
    return app
