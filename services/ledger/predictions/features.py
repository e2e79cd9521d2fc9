"""What a payment prediction may know: an invoice and its customer's history as of a business
date, as recorded by an instant, and the features a model reads from them.

Every change of an invoice carries two stamps: the date it took effect and the instant it was
recorded. ``known`` keeps only the changes recorded by ``known_at`` *and* effective by
``as_of``, so a fact recorded later, even one dated earlier, changes nothing: the features of a
training example are those its invoice had when it was issued (as recorded then), and those of
a prediction the ones the ledger knew when it was asked. Pure: no I/O, no clock.

Features (all numbers; their names are what the model's factors show):

- the customer's history, its invoices settled by ``as_of``: how many (``history_settled``),
  the share paid late (``history_late_share``), the median and the mean of the last 90 days'
  days late (``history_median_days_late``, ``recent_mean_days_late``), the trend (mean days
  late of the last 5 settled less the 5 before, ``history_trend_days``), the worst
  (``history_max_days_late``);
- the customer's last settled invoice's days late (``last_days_late``: drift shows there first);
- the customer now: its other invoices open and past due (``overdue_amount_ratio``: their
  open amount over this invoice's amount, ``overdue_invoices``), and those open and due before
  this one (``older_open_invoices``: cash paid without naming invoices pays the oldest first);
- the invoice: its size (``amount_log``, and against the customer's median invoice,
  ``amount_vs_usual``), its terms (``terms_days``, ``has_cash_discount``), its due date
  (``due_weekday``, ``due_month_end``, ``due_month``: some pay late in some months), how far
  ``as_of`` is from it (``days_to_due``, negative once overdue), the share of it still open
  (``open_share``: a part paid, the rest follows) and the disputed share (``disputed_share``).

``features`` is the definition, one invoice at a time; ``features_many`` gives the very same
figures for many (invoice, date) questions about one customer at once, sweeping the
customer's history forward in time instead of reading all of it for every question (training
asks two questions per invoice; a customer may have thousands).
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from shared.money import ZERO

FEATURES = (
    "history_settled", "history_late_share", "history_median_days_late", "recent_mean_days_late",
    "history_trend_days", "history_max_days_late", "last_days_late", "overdue_amount_ratio",
    "overdue_invoices", "older_open_invoices",
    "amount_log", "amount_vs_usual", "terms_days", "has_cash_discount", "due_weekday", "due_month_end",
    "due_month", "days_to_due", "disputed_share", "open_share",
)
RECENT_DAYS = 90
TREND_INVOICES = 5


@dataclass(frozen=True, slots=True)
class Change:
    """One change of an invoice after its issue: what it did to the open and disputed amounts,
    when it took effect and when it was recorded. ``kind``: ``settlement`` (a payment, credit
    or discount applied, or released), ``adjustment``, ``cancellation``, ``write_off`` or
    ``dispute``."""

    kind: str
    effective: date
    recorded: datetime
    open_delta: Decimal = ZERO
    disputed_delta: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    """An invoice as the ledger recorded it, every change with its two stamps."""

    invoice_id: str
    amount: Decimal  # as issued
    issue_date: date
    due_date: date
    recorded: datetime  # when its issue was recorded
    changes: tuple[Change, ...] = ()
    has_cash_discount: bool = False
    attributes: Mapping[str, object] = field(default_factory=dict)
    currency: str = ""


@dataclass(frozen=True, slots=True)
class Known:
    """An invoice as known at an instant, as of a date."""

    record: InvoiceRecord
    open_amount: Decimal
    disputed: Decimal
    settled_on: date | None  # when its open amount reached zero by settlements (None: open, or not paid)
    cancelled: bool

    @property
    def days_late(self) -> int | None:
        return None if self.settled_on is None else max(0, (self.settled_on - self.record.due_date).days)


def known(record: InvoiceRecord, as_of: date, known_at: datetime) -> Known | None:
    """``record`` as known at ``known_at`` as of ``as_of``; None when not issued by then."""
    if record.recorded > known_at or record.issue_date > as_of:
        return None
    seen = sorted((c for c in record.changes if c.recorded <= known_at and c.effective <= as_of),
                  key=lambda c: (c.effective, c.recorded))
    open_amount, disputed, settled_on = record.amount, ZERO, None
    for change in seen:
        open_amount += change.open_delta
        disputed += change.disputed_delta
        if open_amount > ZERO:
            settled_on = None  # (open, or reopened: a payment released, an adjustment up)
        elif settled_on is None and change.kind == "settlement":
            settled_on = change.effective
    kinds = {c.kind for c in seen}
    if kinds & {"cancellation", "write_off"}:
        settled_on = None  # not paid: no days late to learn from
    return Known(record, open_amount, disputed, settled_on, "cancellation" in kinds)


def features(target: InvoiceRecord, history: Iterable[InvoiceRecord], as_of: date,
             known_at: datetime) -> dict[str, float]:
    """The features of ``target`` (one of the customer's invoices) as of ``as_of`` as known at
    ``known_at``; ``history`` is the customer's invoices (``target`` among them or not)."""
    now = known(target, as_of, known_at)
    if now is None:
        raise ValueError(f"invoice {target.invoice_id} was not issued by {as_of} as known at {known_at}")
    others = [k for r in history if r.invoice_id != target.invoice_id
              and (k := known(r, as_of, known_at)) is not None and not k.cancelled]
    settled = sorted((k for k in others if k.settled_on is not None),
                     key=lambda k: (k.settled_on, k.record.invoice_id))
    late = [k.days_late or 0 for k in settled]
    since = as_of - timedelta(days=RECENT_DAYS)
    recent = [k.days_late or 0 for k in settled if k.settled_on and k.settled_on >= since]
    overdue = [k for k in others if k.open_amount > ZERO and k.record.due_date < as_of]
    older = sum(1 for k in others if k.open_amount > ZERO and k.record.due_date < target.due_date)
    amount = float(target.amount)
    usual = statistics.median([float(k.record.amount) for k in others] or [amount])
    overdue_amount = float(sum((k.open_amount for k in overdue), ZERO))
    return {
        "history_settled": float(len(settled)),
        "history_late_share": sum(1 for d in late if d > 0) / len(late) if late else 0.0,
        "history_median_days_late": float(statistics.median(late)) if late else 0.0,
        "recent_mean_days_late": statistics.fmean(recent) if recent else 0.0,
        "history_trend_days": _trend(late),
        "history_max_days_late": float(max(late, default=0)),
        "last_days_late": float(late[-1]) if late else 0.0,
        "overdue_amount_ratio": overdue_amount / amount if amount else 0.0,
        "overdue_invoices": float(len(overdue)),
        "older_open_invoices": float(older),
        **_invoice_features(target, as_of, usual, now.open_amount, now.disputed),
    }


def _invoice_features(record: InvoiceRecord, as_of: date, usual: float, open_amount: Decimal,
                      disputed: Decimal) -> dict[str, float]:
    """The features of the invoice itself on ``as_of`` (``usual``: the customer's median invoice)."""
    amount = float(record.amount)
    due = record.due_date
    return {
        "amount_log": math.log10(max(amount, 0.01)),
        "amount_vs_usual": amount / usual if usual else 1.0,
        "terms_days": float((due - record.issue_date).days),
        "has_cash_discount": 1.0 if record.has_cash_discount else 0.0,
        "due_weekday": float(due.weekday()),
        "due_month_end": 1.0 if (due + timedelta(days=3)).month != due.month else 0.0,
        "due_month": float(due.month),
        "days_to_due": float((due - as_of).days),
        "disputed_share": float(min(disputed, open_amount) / record.amount) if record.amount else 0.0,
        "open_share": float(open_amount / record.amount) if record.amount else 0.0,
    }


def _trend(late: list[int]) -> float:
    """Mean days late of the last ``TREND_INVOICES`` settled less that of the ones before them."""
    if len(late) < 2 * TREND_INVOICES:
        return 0.0
    recent, earlier = late[-TREND_INVOICES:], late[-2 * TREND_INVOICES:-TREND_INVOICES]
    return statistics.fmean(recent) - statistics.fmean(earlier)


# ---------------------------------------------------------------------------- many at once


@dataclass(frozen=True, slots=True)
class _State:
    """An invoice's ``known`` state after some of its changes (not yet asking whether issued)."""

    open_amount: Decimal
    disputed: Decimal
    settled_on: date | None
    cancelled: bool


def _checkpoints(record: InvoiceRecord, known_at: datetime) -> list[tuple[date, _State]]:
    """The invoice's state after each change recorded by ``known_at``, in the order ``known``
    reads them: its state as of a date is the last one effective by then (or the first)."""
    seen = sorted((c for c in record.changes if c.recorded <= known_at),
                  key=lambda c: (c.effective, c.recorded))
    open_amount, disputed, settled_on, kinds = record.amount, ZERO, None, set()
    found = [(record.issue_date, _State(open_amount, disputed, None, False))]
    for change in seen:
        open_amount += change.open_delta
        disputed += change.disputed_delta
        kinds.add(change.kind)
        if open_amount > ZERO:
            settled_on = None
        elif settled_on is None and change.kind == "settlement":
            settled_on = change.effective
        unpaid = bool(kinds & {"cancellation", "write_off"})
        found.append((change.effective, _State(open_amount, disputed, None if unpaid else settled_on,
                                               "cancellation" in kinds)))
    return found


def _state_at(record: InvoiceRecord, known_at: datetime, at: date) -> _State:
    """The last of ``_checkpoints`` by ``at`` (the invoice issued by then), worked out at once:
    the state after its changes recorded by ``known_at`` and effective by ``at``."""
    seen = [c for c in record.changes if c.recorded <= known_at and c.effective <= at]
    if len(seen) > 1:
        seen.sort(key=_in_effect)
    open_amount, disputed, settled_on, unpaid, cancelled = record.amount, ZERO, None, False, False
    for change in seen:
        open_amount += change.open_delta
        disputed += change.disputed_delta
        if open_amount > ZERO:
            settled_on = None
        elif settled_on is None and change.kind == "settlement":
            settled_on = change.effective
        if change.kind == "cancellation":
            cancelled = unpaid = True
        elif change.kind == "write_off":
            unpaid = True
    return _State(open_amount, disputed, None if unpaid else settled_on, cancelled)


def _in_effect(change: Change) -> tuple[date, datetime]:
    return change.effective, change.recorded


class _Sweep:
    """One customer's invoices as known at an instant, moved forward date by date: the
    aggregates the features read over every invoice issued by the date and not cancelled."""

    def __init__(self, records: Sequence[InvoiceRecord], known_at: datetime, at: date | None = None) -> None:
        """``at``: the sweep starts at that day, each invoice in its last state by then (for the
        questions of a single day, a prediction's: no change is applied one at a time)."""
        self.records = records
        self.states: list[_State | None] = [None] * len(records)  # None: not issued yet
        self.pending: list[tuple[date, int, int, _State]] = []  # (date, order, record, state), latest first
        final: dict[int, _State] = {}
        for index, record in enumerate(records):
            if record.recorded > known_at:
                continue  # not known at all
            if at is not None:
                if record.issue_date <= at:
                    final[index] = _state_at(record, known_at, at)
                continue
            for order, (day, state) in enumerate(_checkpoints(record, known_at)):
                # a change effective before the issue takes effect with it
                self.pending.append((max(day, record.issue_date), order, index, state))
        self.pending.sort(key=lambda p: (p[0], p[2], p[1]), reverse=True)
        self.settled: list[tuple[date, str, int]] = []  # (settled_on, invoice, days late), sorted
        self.days: list[int] = []  # the settled ones' days late, sorted
        self.late = 0
        self.amounts: list[float] = []  # every one's amount as issued, sorted
        self.open: dict[int, tuple[date, Decimal]] = {}  # open ones: due date, open amount
        self.open_dues: list[tuple[date, int]] = []  # the open ones' (due date, index), sorted
        # the open ones overdue on a day (count, amount), kept while nothing opens or closes: one
        # pass over the open invoices for all the questions of a day, not one a question
        self.overdue_on: tuple[date, int, Decimal] | None = None
        if final:
            self._start(final)

    def _start(self, final: dict[int, _State]) -> None:
        """The aggregates of these states, built by sorting: what ``advance`` gives inserting and
        removing one change at a time."""
        late = 0
        for index, state in final.items():
            self.states[index] = state
            if state.cancelled:
                continue
            record = self.records[index]
            self.amounts.append(float(record.amount))
            if state.settled_on is not None:
                days = max(0, (state.settled_on - record.due_date).days)
                self.settled.append((state.settled_on, record.invoice_id, days))
                self.days.append(days)
                late += days > 0
            if state.open_amount > ZERO:
                self.open[index] = (record.due_date, state.open_amount)
                self.open_dues.append((record.due_date, index))
        self.late += late
        for values in (self.amounts, self.settled, self.days, self.open_dues):
            values.sort()

    def advance(self, day: date) -> None:
        while self.pending and self.pending[-1][0] <= day:
            _, _, index, state = self.pending.pop()
            self._count(index, -1)
            self.states[index] = state
            self._count(index, +1)

    def _count(self, index: int, sign: int) -> None:
        state, record = self.states[index], self.records[index]
        if state is None or state.cancelled:
            return
        change = bisect.insort if sign > 0 else _remove
        change(self.amounts, float(record.amount))
        if state.settled_on is not None:
            days = max(0, (state.settled_on - record.due_date).days)
            change(self.settled, (state.settled_on, record.invoice_id, days))
            change(self.days, days)
            self.late += sign * (days > 0)
        if state.open_amount > ZERO:
            self.overdue_on = None
            if sign > 0:
                self.open[index] = (record.due_date, state.open_amount)
                bisect.insort(self.open_dues, (record.due_date, index))
            else:
                del self.open[index]
                _remove(self.open_dues, (record.due_date, index))

    def overdue(self, as_of: date) -> tuple[int, Decimal]:
        """How many open invoices are past due on ``as_of``, and their open amount."""
        if self.overdue_on is None or self.overdue_on[0] != as_of:
            count, amount = 0, ZERO
            for due, open_amount in self.open.values():
                if due < as_of:
                    count += 1
                    amount += open_amount
            self.overdue_on = (as_of, count, amount)
        return self.overdue_on[1], self.overdue_on[2]

    def row(self, target: int, as_of: date) -> dict[str, float]:
        """``features`` of ``records[target]`` on ``as_of`` (the sweep advanced to it)."""
        record, state = self.records[target], self.states[target]
        if state is None:
            raise ValueError(f"invoice {record.invoice_id} was not issued by {as_of} as known then")
        counted = not state.cancelled
        own_days = None
        if counted and state.settled_on is not None:
            own_days = max(0, (state.settled_on - record.due_date).days)
            own = (state.settled_on, record.invoice_id, own_days)
            _remove(self.settled, own)
            _remove(self.days, own_days)
            self.late -= own_days > 0
        try:
            settled, days = self.settled, self.days
            since = as_of - timedelta(days=RECENT_DAYS)
            recent = [d for _, _, d in settled[bisect.bisect_left(settled, (since,)):]]
            late = [d for _, _, d in settled[-2 * TREND_INVOICES:]]
            overdue_n, overdue_amount = self.overdue(as_of)
            mine = self.open.get(target)
            if mine is not None and mine[0] < as_of:  # (the others')
                overdue_n, overdue_amount = overdue_n - 1, overdue_amount - mine[1]
            # the others open and due before it (it is not: its own due date is not before itself)
            older = bisect.bisect_left(self.open_dues, (record.due_date,))
            amount = float(record.amount)
            others = len(self.amounts) - counted
            usual = _median_without(self.amounts, amount if counted else None) if others else amount
            return {
                "history_settled": float(len(days)),
                "history_late_share": self.late / len(days) if days else 0.0,
                "history_median_days_late": float(_median_without(days, None)) if days else 0.0,
                "recent_mean_days_late": sum(recent) / len(recent) if recent else 0.0,
                "history_trend_days": _trend(late) if len(settled) >= 2 * TREND_INVOICES else 0.0,
                "history_max_days_late": float(days[-1]) if days else 0.0,
                "last_days_late": float(settled[-1][2]) if settled else 0.0,
                "overdue_amount_ratio": float(overdue_amount) / amount if amount else 0.0,
                "overdue_invoices": float(overdue_n),
                "older_open_invoices": float(older),
                **_invoice_features(record, as_of, usual, state.open_amount, state.disputed),
            }
        finally:
            if own_days is not None:
                bisect.insort(self.settled, own)
                bisect.insort(self.days, own_days)
                self.late += own_days > 0


def _remove(values: list, value: object) -> None:  # type: ignore[type-arg]
    del values[bisect.bisect_left(values, value)]


def _median_without(values: Sequence[float], left_out: float | None) -> float:
    """``statistics.median`` of sorted ``values`` with one ``left_out`` (one of them) taken out."""
    if left_out is None:
        return statistics.median(values)
    skip = bisect.bisect_left(values, left_out)
    n = len(values) - 1

    def at(i: int) -> float:
        return values[i if i < skip else i + 1]

    return at(n // 2) if n % 2 else (at(n // 2 - 1) + at(n // 2)) / 2


def features_many(records: Sequence[InvoiceRecord], known_at: datetime,
                  questions: Iterable[tuple[int, date]]) -> list[dict[str, float]]:
    """``features(records[i], records, day, known_at)`` for each question ``(i, day)``, in the
    order asked (one customer's invoices, one instant)."""
    asked = list(questions)
    answers: list[dict[str, float]] = [{} for _ in asked]
    days = {day for _, day in asked}
    sweep = _Sweep(records, known_at, at=days.pop() if len(days) == 1 else None)
    for number in sorted(range(len(asked)), key=lambda n: asked[n][1]):
        index, day = asked[number]
        if records[index].issue_date > day:
            raise ValueError(f"invoice {records[index].invoice_id} was not issued by {day}")
        sweep.advance(day)
        answers[number] = sweep.row(index, day)
    return answers
