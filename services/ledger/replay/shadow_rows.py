"""The shadow tables' rows, held in memory while a replay builds them.

A replay is the only writer of its shadow tables, so a batch need not read back the rows
earlier batches made: ``ShadowRows`` keeps every invoice, dispute, customer, replay and
balance row it has made (and the currency of each payment received, for reversals that
paid no invoice). Movements go out batch by batch through a second connection, so the
server stores one batch while this process projects the next; the other rows are written
once, at the end, in bulk, each row once instead of once per batch that touched it.

Memory is bounded: past ``limit`` rows held, ``spill`` writes them out and the build goes
on as the live projector works, reading rows back from the tables.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, Table

from services.ledger.read.projections import Decoded, LedgerProjector, ReadModels, _Batch
from shared.db import insert_rows

# About 1.1 KB a row (measured: 2.7 GB of RSS for the 2.2 million rows of a book of a
# million invoices): the default holds such a book, within about 3.5 GB.
DEFAULT_LIMIT = 3_000_000
_FLUSH_CHUNK = 50_000  # rows per statement (and, on SQLite, per transaction) at the end


class ShadowRows:
    """Every shadow row made so far, but the movements (see the module's docstring)."""

    def __init__(self, engine: Engine, models: ReadModels, *, limit: int = DEFAULT_LIMIT) -> None:
        self.engine = engine
        self.models = models
        self.limit = limit
        self.invoices: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.disputes_of: dict[str, list[str]] = {}  # invoice -> dispute ids ever opened on it
        self.replays: dict[str, dict[str, Any]] = {}
        self.prepayments: dict[tuple[str, str], dict[str, Any]] = {}  # (customer, request id) -> row
        self.tags: dict[tuple[str, str], dict[str, Any]] = {}  # (customer, credit) -> held-for row
        self.customers: dict[str, dict[str, Any]] = {}
        self.balances: dict[tuple[str, str], list[Decimal]] = {}
        self.receipts: dict[tuple[str, str], str] = {}  # (customer, payment credit) -> currency
        # SQLite has one writer: a second connection would only wait for the first
        self._writer = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="replay-writer")
                        if engine.dialect.name == "postgresql" else None)
        self._pending: concurrent.futures.Future[None] | None = None

    @property
    def held(self) -> int:
        return (len(self.invoices) + len(self.disputes) + len(self.customers) + len(self.balances)
                + len(self.receipts) + len(self.replays) + len(self.prepayments) + len(self.tags))

    @property
    def full(self) -> bool:
        return self.held > self.limit

    def project(self, projector: LedgerProjector, events: list[Decoded]) -> None:
        """Apply a batch of events to the held rows; its movements go to the tables."""
        if events:
            projector.project_batch(_HeldBatch(self, events), events)

    def write_movements(self, rows: list[dict[str, Any]]) -> None:
        """Store one batch's movements: by the writer thread while the next batch is projected
        (one batch in flight at most, so memory stays bounded and errors surface)."""
        self.wait()
        if self._writer is None:
            self._insert(self.models.movements, rows)
        else:
            self._pending = self._writer.submit(self._insert, self.models.movements, rows)

    def wait(self) -> None:
        """Until the movements handed over so far are committed (raises what their write raised)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def spill(self) -> None:
        """Write every held row to the shadow tables and forget them (movements included)."""
        self.wait()
        models = self.models
        self._insert_chunks(models.invoices, self.invoices.values())
        self._insert_chunks(models.disputes, self.disputes.values())
        self._insert_chunks(models.customers, self.customers.values())
        self._insert_chunks(models.replays, self.replays.values())
        self._insert_chunks(models.prepayments, self.prepayments.values())
        self._insert_chunks(models.prepayment_credits, self.tags.values())
        self._insert_chunks(models.balances, (
            {"customer_id": customer, "currency": currency, "open_amount": amounts[0],
             "disputed_amount": amounts[1], "unapplied_cash": amounts[2]}
            for (customer, currency), amounts in self.balances.items()
        ))
        for held in (self.invoices, self.disputes, self.disputes_of, self.customers, self.balances,
                     self.receipts, self.replays, self.prepayments, self.tags):
            held.clear()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)

    def _insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            insert_rows(conn, table, rows)

    def _insert_chunks(self, table: Table, rows: Iterable[dict[str, Any]]) -> None:
        chunk: list[dict[str, Any]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) == _FLUSH_CHUNK:
                self._insert(table, chunk)
                chunk = []
        if chunk:
            self._insert(table, chunk)

    def keep(self, batch: _HeldBatch) -> None:
        """Take in what a batch made or changed (its rows are held ones, changed in place)."""
        self.invoices.update(batch.invoices)
        self.disputes.update(batch.disputes)
        for dispute_id, row in batch.disputes.items():
            listed = self.disputes_of.setdefault(row["invoice_id"], [])
            if dispute_id not in listed:
                listed.append(dispute_id)
        self.replays.update(batch.replays)
        self.prepayments.update(batch.prepayments)
        self.tags.update(((row["customer_id"], row["credit"]), row) for row in batch.tags)
        self.customers.update(batch.customers)
        balances = self.balances
        for key, deltas in batch.balance_deltas().items():
            amounts = balances.get(key)
            if amounts is None:
                balances[key] = deltas  # a new row: the batch's own list, not shared
            else:
                amounts[0] += deltas[0]
                amounts[1] += deltas[1]
                amounts[2] += deltas[2]
        receipts = self.receipts
        for movement in batch.movements:
            if movement["kind"] == "payment_received":
                receipts.setdefault((movement["customer_id"], movement["credit"]), movement["currency"])


class _HeldBatch(_Batch):
    """A batch whose stored rows are the ones ``ShadowRows`` holds: no query, one write."""

    def __init__(self, rows: ShadowRows, events: list[Decoded]) -> None:
        self.rows = rows
        super().__init__(None, rows.models, events)  # type: ignore[arg-type]  # never queries

    def stored_invoices(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        held = self.rows.invoices
        return {i: held[i] for i in ids if i in held}

    def stored_disputes(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        held = self.rows.disputes
        return {i: held[i] for i in ids if i in held}

    def stored_replays(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        held = self.rows.replays
        return {i: held[i] for i in ids if i in held}

    def stored_prepayments(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        held = self.rows.prepayments
        return {k: held[k] for k in keys if k in held}

    def disputes_waiting_for(self, invoice_ids: set[str]) -> list[dict[str, Any]]:
        disputes, disputes_of = self.rows.disputes, self.rows.disputes_of
        return [disputes[d] for i in invoice_ids for d in disputes_of.get(i, ())
                if disputes[d]["invoice_id"] == i]  # not since moved to another invoice

    def receipt_currencies(self, credits: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        receipts = self.rows.receipts
        return {key: receipts[key] for key in credits if key in receipts}

    def write(self) -> None:
        self.rows.keep(self)
        if self.movements:
            self.rows.write_movements(self.movements)
