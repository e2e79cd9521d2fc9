"""Domain errors of the dunning service: a refused command raises one, naming the ids involved."""


class DunningError(ValueError):
    """A command the dunning domain refuses; the service layer maps it to a 422/409 problem."""


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
