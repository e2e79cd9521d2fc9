"""The payment models' versions, kept in the ledger's database (``ledger_models``), so that
every replica serves the same ones: each with its training cut-off, the instant it was stored
(a prediction known at an instant uses the newest stored by then), its training set's size,
its metrics, the library versions and the fitted models. A version trained on too little
history is stored without models: the baseline answers for it.

Not a read model: a replay of the read models leaves it alone (it is no function of the events).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    select,
)

from services.ledger.predictions.features import FEATURES
from services.ledger.predictions.history import customer_records
from services.ledger.predictions.model import MIN_EXAMPLES, PaymentModel, fit, metrics, training_set
from services.ledger.read.projections import customers, invoices, metadata
from shared.db import insert_rows, plain_row

log = logging.getLogger(__name__)

models = Table(
    "ledger_models", metadata,
    Column("model_version", String(80), primary_key=True),
    Column("trained_at", DateTime(timezone=True), nullable=False),
    Column("cutoff", DateTime(timezone=True), nullable=False),
    Column("seed", Integer, nullable=False),
    Column("training_invoices", Integer, nullable=False),
    Column("examples", Integer, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("libraries", JSON, nullable=False),
    Column("blob", LargeBinary),  # the fitted PaymentModel; None: too little history (the baseline)
    Index("ix_ledger_models_trained_at", "trained_at"),
)

_SUMMARY = ("model_version", "trained_at", "cutoff", "seed", "training_invoices", "examples", "metrics",
            "libraries")


def version_name(cutoff: datetime, seed: int) -> str:
    return f"m-{cutoff.strftime('%Y%m%dT%H%M%S')}-s{seed}"


def train(engine: Engine, cutoff: datetime, now: datetime, seed: int = 7) -> dict[str, Any]:
    """Fit and store the version of ``cutoff`` (what was recorded by then) and ``seed``; the same
    cut-off and seed again answer the stored version (the same models: deterministic). The
    answer also holds ``seconds``: how long each step took (not stored)."""
    name = version_name(cutoff, seed)
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(step: str) -> None:
        nonlocal clock
        seconds[step] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()

    with engine.connect() as conn:
        stored = conn.execute(select(*(models.c[c] for c in _SUMMARY)).where(models.c.model_version == name))
        found = stored.mappings().first()
        if found is not None:
            return plain_row(found)
        ids = [row[0] for row in conn.execute(select(customers.c.customer_id).union(
            select(invoices.c.customer_id)))]
        records = customer_records(conn, ids)
    lap("read")
    examples = training_set(records, cutoff)
    del records
    lap("examples")
    model = fit(examples, seed) if len(examples.rows) >= MIN_EXAMPLES else None
    lap("fit")
    figures = metrics(model, examples) if model is not None else {"baseline": True}
    lap("metrics")
    row = {"model_version": name, "trained_at": now, "cutoff": cutoff, "seed": seed,
           "training_invoices": len(examples.invoices), "examples": len(examples.rows),
           "metrics": figures,
           "libraries": model.libraries if model is not None else {},
           "blob": model.dumps() if model is not None else None}
    with engine.begin() as conn:
        insert_rows(conn, models, [row])
    lap("store")
    return {**{k: row[k] for k in _SUMMARY}, "seconds": seconds}


def versions(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = select(*(models.c[c] for c in _SUMMARY)).order_by(models.c.trained_at.desc())
        return [plain_row(row) for row in conn.execute(query).mappings()]


def model_at(engine: Engine, known_at: datetime) -> tuple[str | None, PaymentModel | None]:
    """The newest version stored by ``known_at`` and its models (None, None: none yet)."""
    with engine.connect() as conn:
        name = newest_version(conn, known_at)
    return name, (_load(engine, name) if name is not None else None)


def newest_version(conn: Connection, known_at: datetime) -> str | None:
    """The name of the newest version stored by ``known_at`` (None: none yet)."""
    return conn.execute(select(models.c.model_version).where(models.c.trained_at <= known_at)
                        .order_by(models.c.trained_at.desc()).limit(1)).scalar()


def load_version(engine: Engine, name: str | None) -> PaymentModel | None:
    """A version's models (None: no version, or one trained on too little history)."""
    return _load(engine, name) if name is not None else None


_LOADED: dict[tuple[str, str], PaymentModel | None] = {}  # (database, version) -> its models
_KEEP = 8


def _load(engine: Engine, name: str) -> PaymentModel | None:
    """A version's models, unpickled once per process (a version never changes)."""
    key = (str(engine.url), name)
    if key not in _LOADED:
        with engine.connect() as conn:
            blob = conn.execute(select(models.c.blob).where(models.c.model_version == name)).scalar()
        if len(_LOADED) >= _KEEP:
            _LOADED.pop(next(iter(_LOADED)))
        model = PaymentModel.loads(blob) if blob is not None else None
        if model is not None and model.features != FEATURES:
            # trained on other features (an older release): not usable until a version is
            # trained again (daily, or POST /admin/models); the baseline answers meanwhile
            log.warning("payment model %s was trained on other features: not used", name)
            model = None
        _LOADED[key] = model
    return _LOADED[key]
