"""The marketer's console: server-rendered pages under ``/console`` (docs/console.md)."""

from __future__ import annotations

from fastapi import FastAPI

from serving.settings import Settings


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the console's routes and static assets on ``app`` and redirect ``GET /`` to it."""
    from serving.console.routes import Console, routes

    app.state.console = Console(settings)
    app.router.routes.extend(routes())
