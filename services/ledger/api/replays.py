"""Operations on the ledger (``ops:replay``): replay the read models online, and the replays' record.

``POST /admin/replay`` records the request in the event store with the caller's identity,
answers 202 with the run's id and rebuilds in the background (see ``services.ledger.replay.online``);
the run ends ``switched`` or ``failed`` (the live tables unchanged), which ``GET /admin/replays`` and
``GET /admin/replays/{run_id}`` show. One replay at a time: 409 while one runs here; a
replay running elsewhere (the command line) makes this one fail with the reason recorded.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import select

from services.ledger.api.params import EngineDep
from services.ledger.application import LedgerApplication
from services.ledger.domain.replay_run import ReplayRun
from services.ledger.read.projections import replays
from services.ledger.replay import runs, shadow_rows
from services.ledger.replay.online import OnlineReplay
from shared.auth import ReplayOperator
from shared.db import make_engine, plain_row
from shared.problems import Problem, not_found
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/admin", tags=["operations"])


class ReplayRequest(BaseModel):
    verify: bool = True  # compare the rebuilt tables with the live ones, row for row, before switching


class ReplayOut(BaseModel):
    run_id: str
    requested_by: str
    via: str
    verify: bool
    requested_at: datetime
    status: str  # running | switched | failed
    finished_at: datetime | None = None
    position: int | None = None
    events: int | None = None
    milliseconds: int | None = None
    detail: str | None = None


class ReplaysOut(BaseModel):
    replays: list[ReplayOut]


class RecordedEventOut(BaseModel):
    version: int
    recorded_at: datetime
    type: str
    data: dict[str, Any]


class ReplayDetailOut(ReplayOut):
    recorded_events: list[RecordedEventOut]  # straight from the event store


def _write_lock(request: Request) -> asyncio.Lock:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        lock: asyncio.Lock = runtime.write_lock  # one writer of the event store per process
        return lock
    if not hasattr(request.app.state, "admin_write_lock"):
        request.app.state.admin_write_lock = asyncio.Lock()
    lock = request.app.state.admin_write_lock
    return lock


@router.post("/replay", status_code=202, response_model=ReplayOut)
async def post_replay(
    request: Request, response: Response, engine: EngineDep, principal: ReplayOperator,
    body: Annotated[ReplayRequest | None, Body()] = None,
) -> ReplayOut:
    """Rebuild every read model from the event store and switch it in, while the service serves."""
    verify = (body or ReplayRequest()).verify
    running: asyncio.Task[None] | None = getattr(request.app.state, "replay_task", None)
    if running is not None and not running.done():
        raise Problem(409, "replay-running", detail="a replay of the ledger's read models is running",
                      run_id=getattr(request.app.state, "replay_run_id", None))
    ledger: LedgerApplication = request.app.state.ledger
    lock = _write_lock(request)
    async with lock:
        run = await asyncio.to_thread(
            runs.record_requested, ledger, principal.identity, "api", verify
        )
    url = engine.url.render_as_string(hide_password=False)
    request.app.state.replay_run_id = run.run_id
    request.app.state.replay_task = asyncio.create_task(
        _replay(ledger, url, run, verify, lock, _memory_rows(request)), name=f"ledger-replay-{run.run_id}"
    )
    response.headers["Location"] = f"/admin/replays/{run.run_id}"
    return ReplayOut(run_id=run.run_id, requested_by=run.requested_by, via=run.via, verify=verify,
                     requested_at=run.created_on, status="running")


def _memory_rows(request: Request) -> int:
    settings: ServiceSettings | None = getattr(request.app.state, "settings", None)
    return settings.replay_memory_rows if settings is not None else shadow_rows.DEFAULT_LIMIT


async def _replay(ledger: LedgerApplication, url: str, run: ReplayRun, verify: bool,
                  lock: asyncio.Lock, memory_rows: int) -> None:
    engine = make_engine(url, writer=True)
    try:
        replay = OnlineReplay(ledger, engine, memory_limit=memory_rows)
        result = await asyncio.to_thread(replay.run, verify=verify)
    except Exception as error:
        log.exception("replay %s failed; the live read models are unchanged", run.run_id)
        fields: dict[str, Any] = {"detail": f"{type(error).__name__}: {error}"}
        status = "failed"
    else:
        log.info("replay %s switched in %d events at position %d", run.run_id, result.events, result.position)
        status = "switched"
        fields = {"position": result.position, "events": result.events,
                  "milliseconds": round(result.seconds * 1000),
                  "detail": "verified: identical to the live tables" if verify else None}
    finally:
        engine.dispose()
    async with lock:
        await asyncio.to_thread(runs.record_finished, ledger, run, status, **fields)


def _out(row: Any) -> dict[str, Any]:
    return plain_row({column.name: row[column.name] for column in replays.columns})


@router.get("/replays", response_model=ReplaysOut)
async def get_replays(
    engine: EngineDep, _: ReplayOperator, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> ReplaysOut:
    """The replays of the read models, newest first (from the ``ledger_replays`` read model)."""

    def read() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            query = select(replays).order_by(replays.c.requested_at.desc(), replays.c.run_id).limit(limit)
            return [_out(row) for row in conn.execute(query).mappings()]

    return ReplaysOut(replays=[ReplayOut(**row) for row in await asyncio.to_thread(read)])


@router.get("/replays/{run_id}", response_model=ReplayDetailOut)
async def get_replay(run_id: str, request: Request, _: ReplayOperator) -> ReplayDetailOut:
    """One replay as the event store records it (the read model may lag it by a moment)."""
    ledger: LedgerApplication = request.app.state.ledger
    history = await asyncio.to_thread(runs.run_history, ledger, run_id)
    if not history:
        raise not_found("replay", run_id)
    requested = history[0]
    summary: dict[str, Any] = {
        "run_id": run_id, "requested_at": requested.recorded_at, "status": "running",
        **{k: requested.data[k] for k in ("requested_by", "via", "verify")},
    }
    for recorded in history[1:]:
        if recorded.type == "ReplayFinished":
            summary.update({k: recorded.data[k] for k in ("status", "position", "events", "milliseconds",
                                                           "detail")}, finished_at=recorded.recorded_at)
    return ReplayDetailOut(**summary, recorded_events=[
        RecordedEventOut(version=e.version, recorded_at=e.recorded_at, type=e.type, data=e.data)
        for e in history
    ])
