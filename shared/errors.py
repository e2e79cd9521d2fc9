"""The base of every domain error: what a service's domain refuses, naming the field it refused.

The three services' domain errors (``LedgerError``, ``DunningError``, ``CreditError`` and their
subclasses) derive from :class:`DomainError`. A refusal says which field of the command or
message it is about (``field``, in the domain's words: ``"amount"``, ``"hold_id"``), or None
when it is about the whole. Each service maps its classes to problem documents once
(``shared.problems.DomainProblems``, registered on its app); the consumers dead-letter a
message whose processing raised one (and only one of these: anything else is a bug or an
outage, which stops the batch and is retried).

Pure: no I/O, nothing from ``services``; the domain packages import it.
"""

from __future__ import annotations


class DomainError(ValueError):
    """A command or message the domain refuses; ``str(error)`` says why, ``field`` names what."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
