"""The operations endpoints every service serves: liveness, readiness, Prometheus metrics.

A service's app keeps its read-model engine and its runtime (Kafka link, metrics) in
``app.state.engine`` and ``app.state.runtime``.
"""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import Engine, text

from shared.problems import Problem
from shared.runtime import ServiceRuntime

health = APIRouter(tags=["operations"])


@health.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/health/ready")
async def ready(request: Request) -> Response:
    """Ready when the store and Kafka are reachable (the contract) and no loop is stuck on an
    event (``shared.stalls``); else a 503 problem naming what is not."""
    engine: Engine = request.app.state.engine
    runtime: ServiceRuntime = request.app.state.runtime

    def database_ok() -> bool:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    stalls = runtime.metrics.stalls
    stuck = stalls.stuck()
    checks = {"database": await asyncio.to_thread(database_ok), "kafka": await runtime.kafka.reachable(),
              "progress": not stuck}
    if all(checks.values()):
        return Response(orjson.dumps({"status": "ready", "checks": checks}), media_type="application/json")
    now = stalls.clock()
    failing = [f"{name} unreachable" for name in ("database", "kafka") if not checks[name]]
    failing += [stall.summary(now) for stall in stuck]
    raise Problem(503, "not-ready", detail="; ".join(failing), checks=checks,
                  stuck=[stall.as_dict(now) for stall in stuck])


@health.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    runtime: ServiceRuntime = request.app.state.runtime
    return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")
