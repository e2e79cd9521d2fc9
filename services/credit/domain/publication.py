"""What each stored credit event publishes on ``ar.credit.events``: (type, data) pairs, no I/O.

The service's outbox wraps them in CloudEvents (id from the stored event, key the customer
id). Contract types and their fields:

- ``HoldPlaced`` -> ``credit.hold_placed``: ``customer_id``, ``hold_id``, ``reasons`` (codes
  ``limit_exceeded``, ``overdue_days``, ``risk_grade``, ``manual``), ``exposure`` and
  ``limit`` (decimal strings of the currency behind the hold, named in ``currency``; null
  when there is none), plus ``positions`` (every currency), ``placed_by``, ``note``,
  ``overdue_invoices``, ``risk_grade``, ``effective_date``.
- ``HoldReleased`` -> ``credit.hold_released``: ``customer_id``, ``hold_id``, ``released_by``
  (``auto`` or the user), ``reason``, plus ``reasons`` (the hold's), ``positions``.
- ``LimitSet`` / ``LimitExpired`` -> ``credit.limit_changed``: ``customer_id``, ``currency``,
  ``limit`` (null once expired), ``previous_limit``, ``changed_by``, ``change`` (``set`` or
  ``expired``), ``expires_on``, ``review_on``.
- ``RiskGradeChanged`` -> ``credit.risk_grade_changed``: ``customer_id``, ``grade``,
  ``previous_grade``, ``score``, ``factors``, ``as_of``.

- ``SecurityExpiring`` -> ``credit.security_expiring``: ``customer_id``, ``security_id``,
  ``kind``, ``currency``, ``amount`` (what is left of it), ``valid_until``, ``days_left``,
  ``as_of`` (the review that saw it end within 30 days).

- ``WarningRaised`` -> ``credit.warning_raised``: ``warning_id``, ``customer_id``, ``signal``,
  ``severity``, ``evidence`` (the figures that tripped it), ``raised_on``, plus ``hold``.
- ``WarningCleared`` -> ``credit.warning_cleared``: ``warning_id``, ``customer_id``, ``signal``,
  ``cleared_on``.

Added types (the contract welcomes them): ``credit.warning_acknowledged`` (``warning_id``,
``customer_id``, ``note``, ``by``, ``acknowledged_on``), ``credit.hold_reasons_changed`` (an active
automatic hold's reasons changed) and ``credit.limit_review_due``. Checks, reservations,
ledger facts and overdue marks are internal and publish nothing.
"""

from __future__ import annotations

from typing import Any

# the stored events that publish something, by class name (the rest publish nothing)
PUBLISHING = frozenset({"HoldPlaced", "HoldReasonsChanged", "HoldReleased", "LimitSet", "LimitExpired",
                        "LimitReviewDue", "RiskGradeChanged", "SecurityExpiring", "WarningRaised",
                        "WarningCleared", "WarningAcknowledged"})


def published(event: Any) -> list[tuple[str, dict[str, Any]]]:
    """The outbound messages one stored credit event gives rise to (possibly none)."""
    kind = type(event).__name__
    if kind == "HoldPlaced":
        hold = event.hold
        return [("credit.hold_placed", {
            "customer_id": hold["customer_id"], "hold_id": hold["hold_id"], "reasons": hold["reasons"],
            "currency": hold["currency"], "exposure": hold["exposure"], "limit": hold["limit"],
            "positions": hold["positions"], "placed_by": hold["placed_by"], "note": hold["note"],
            "overdue_invoices": hold["overdue_invoices"], "risk_grade": hold["risk_grade"],
            "effective_date": hold["effective_date"],
        })]
    if kind == "HoldReasonsChanged":
        change = event.change
        return [("credit.hold_reasons_changed", {
            k: change[k] for k in ("customer_id", "hold_id", "previous_reasons", "reasons", "positions",
                                   "overdue_invoices", "risk_grade", "effective_date")})]
    if kind == "HoldReleased":
        release = event.release
        return [("credit.hold_released", {
            k: release[k] for k in ("customer_id", "hold_id", "released_by", "reason", "reasons", "positions",
                                    "effective_date")})]
    if kind == "LimitSet":
        limit = event.limit
        if limit["previous"] == limit["amount"] and not (limit["expires_on"] or limit["review_on"]):
            return []  # the ERP re-sent the limit in force
        return [("credit.limit_changed", {
            "customer_id": limit["customer_id"], "currency": limit["currency"], "limit": limit["amount"],
            "previous_limit": limit["previous"], "changed_by": limit["set_by"], "change": "set",
            "expires_on": limit["expires_on"], "review_on": limit["review_on"],
        })]
    if kind == "LimitExpired":
        return [("credit.limit_changed", {
            "customer_id": event.customer_id, "currency": event.currency, "limit": None,
            "previous_limit": event.amount, "changed_by": "auto", "change": "expired",
            "expires_on": event.expires_on, "review_on": None, "as_of": event.as_of,
        })]
    if kind == "LimitReviewDue":
        return [("credit.limit_review_due", {
            "customer_id": event.customer_id, "currency": event.currency, "review_on": event.review_on,
            "as_of": event.as_of,
        })]
    if kind == "RiskGradeChanged":
        assessment = event.assessment
        return [("credit.risk_grade_changed", {
            "customer_id": event.customer_id, "grade": assessment["grade"], "previous_grade": event.previous,
            "score": assessment["score"], "factors": assessment["factors"], "as_of": event.as_of,
        })]
    if kind == "SecurityExpiring":
        return [("credit.security_expiring", dict(event.notice))]
    if kind == "WarningRaised":
        return [("credit.warning_raised", {k: v for k, v in event.warning.items() if k != "trigger"})]
    if kind == "WarningCleared":
        return [("credit.warning_cleared", dict(event.clearance))]
    if kind == "WarningAcknowledged":
        return [("credit.warning_acknowledged", dict(event.acknowledgement))]
    return []
