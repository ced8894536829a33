"""The ASGI application (Starlette)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import tomllib
from collections.abc import AsyncIterator
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hello_service.faults import Fault, current_fault
from hello_service.people import People
from hello_service.release import ReleaseInfo, load_release

log = logging.getLogger("hello_service")


def _greeting_word() -> str:
    try:
        text = resources.files("hello_service").joinpath("settings.toml").read_text()
    except FileNotFoundError:
        return "Hello"
    return str(tomllib.loads(text).get("greeting", "Hello"))


def create_app(
    fault: Fault | None = None,
    release: ReleaseInfo | None = None,
    seed: int | None = None,
    database_url: str | None = None,
    people_schema: str | None = None,
) -> Starlette:
    """The app; ``database_url`` defaults to ``$DATABASE_URL`` (no database when unset)."""
    fault = fault if fault is not None else current_fault()
    release = release if release is not None else load_release()
    if database_url is None:
        database_url = os.environ.get("DATABASE_URL") or None
    people = People(database_url, people_schema)
    word = _greeting_word()
    rng = random.Random(seed)
    counters = {"requests": 0, "errors": 0}
    started = time.monotonic()

    async def api_fault() -> JSONResponse | None:
        counters["requests"] += 1
        if fault.after_s and time.monotonic() - started < fault.after_s:
            return None  # a late fault: good until then
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.error_share and rng.random() < fault.error_share:
            counters["errors"] += 1
            return JSONResponse({"error": "injected fault"}, status_code=500)
        return None

    async def healthz(request: Request) -> JSONResponse:
        if fault.unhealthy:
            return JSONResponse({"status": "unhealthy"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def version(request: Request) -> JSONResponse:
        return JSONResponse({"version": release.version, "commit": release.commit})

    async def greeting(request: Request) -> JSONResponse:
        failed = await api_fault()
        if failed:
            return failed
        name = request.query_params.get("name", "world").strip()[:64] or "world"
        return JSONResponse({"greeting": f"{word}, {name}!", "version": release.version})

    async def stats(request: Request) -> JSONResponse:
        failed = await api_fault()
        if failed:
            return failed
        return JSONResponse(
            {
                "requests": counters["requests"],
                "errors": counters["errors"],
                "version": release.version,
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        people.close()

    async def list_people(request: Request) -> JSONResponse:
        failed = await api_fault()
        if failed:
            return failed
        body = {"database": people.enabled, "schema": people.schema, "version": release.version}
        if not people.enabled:
            return JSONResponse({"people": [], **body})
        try:
            rows = await run_in_threadpool(people.list)  # the database calls block
        except Exception as exc:  # noqa: BLE001 - any database failure is a 503, never a crash
            counters["errors"] += 1
            log.warning("people: the database did not answer (%s)", type(exc).__name__)
            return JSONResponse({"error": "database unavailable", **body}, status_code=503)
        return JSONResponse({"people": rows, **body})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/version", version),
            Route("/api/greeting", greeting),
            Route("/api/stats", stats),
            Route("/api/people", list_people),
        ],
        lifespan=lifespan,
    )
