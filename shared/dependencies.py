"""What every service's routes take from the app's state: the read-model engine, the hot
reads' runner (``HotReads``) and the one way into the event store (``StoreWriter``);
``from_state`` for what a service keeps there of its own (its application, its runner).

The getters are coroutines: FastAPI runs a plain ``def`` dependency in a worker thread, a
thread hop per request that costs more than most answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine

from shared.hot_reads import HotReads
from shared.runtime import ServiceRuntime
from shared.store_writer import StoreWriter


async def get_writer(request: Request) -> StoreWriter:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime.writer


def from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency that gives ``request.app.state.<name>`` (for ``Depends``)."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = get.__qualname__ = f"get_{name}"
    return get


EngineDep = Annotated[Engine, Depends(from_state("engine"))]
ReadsDep = Annotated[HotReads, Depends(from_state("reads"))]
WriterDep = Annotated[StoreWriter, Depends(get_writer)]
