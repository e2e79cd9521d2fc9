"""Domain errors of the dunning service: a refused command raises one, naming the ids involved."""

from shared.errors import DomainError


class DunningError(DomainError):
    """A command the dunning domain refuses, naming its ``field`` where it is about one; the
    service answers it with a problem (``api.DUNNING_PROBLEMS``)."""


class UnknownInvoice(DunningError):
    pass


class InvoiceNotOpen(DunningError):
    pass


class CurrencyMismatch(DunningError):
    pass


class InvalidPromise(DunningError):
    pass


class AlreadyPromised(DunningError):
    """An invoice is already covered by an open promise to pay."""


class UnknownTask(DunningError):
    """No such task for this customer."""


class TaskNotOpen(DunningError):
    """The task is done already."""


class InvalidPlan(DunningError):
    """A payment plan that cannot be agreed as asked (its instalments, invoices or dates)."""


class PlanConflict(DunningError):
    """A plan id used for another plan, or an invoice already covered by an open plan."""


class UnknownPlan(DunningError):
    """No such payment plan for this customer."""


class PlanNotRequested(DunningError):
    """The plan was decided already (approved, rejected) or has ended."""


class SelfApproval(DunningError):
    """Four eyes: the identity that asked for a plan cannot approve it."""


class UnknownStatement(DunningError):
    """No such statement for this customer."""


class InvalidConfirmation(DunningError):
    """A customer's answer to a statement that cannot be recorded as given."""
