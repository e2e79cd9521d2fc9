"""How a customer pays by bank transfer: an ISO 11649 structured creditor reference (RF) per
invoice, and the EPC QR code ("GiroCode", EPC069-12) that a banking app scans.

The reference is the invoice id itself when the id is only upper-case letters and digits and
fits the 21 characters ISO 11649 allows, else a digest of it: upper-casing or dropping
punctuation would make ``INV-1`` and ``inv1`` one reference. The console finds the invoice again
by computing the references of the customer's open invoices (``invoice_of``), so nothing needs
to be stored; a reference that two of them share names neither. python-stdnum checks the
result; segno draws the code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from decimal import Decimal

import segno
from segno import helpers
from stdnum import iso11649
from stdnum.iso7064 import mod_97_10

MAX_BODY = 21
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _digest_body(invoice_id: str) -> str:
    number = int.from_bytes(hashlib.sha256(invoice_id.encode()).digest()[:13], "big")
    digits = ""
    while number and len(digits) < MAX_BODY - 1:
        number, rest = divmod(number, 36)
        digits = _ALPHABET[rest] + digits
    return "Z" + digits  # Z: marks a digest, so it cannot equal an id's own letters and digits


def rf_reference(invoice_id: str) -> str:
    """``RF89INV12`` for invoice ``INV12``: RF, two check digits, up to 21 letters and digits."""
    body = invoice_id
    if not body or len(body) > MAX_BODY or body.startswith("Z") or any(c not in _ALPHABET for c in body):
        body = _digest_body(invoice_id)
    reference = "RF" + mod_97_10.calc_check_digits(body + "RF") + body
    return str(iso11649.validate(reference))


def printed(reference: str) -> str:
    """The reference in groups of four, as it is printed and typed."""
    return str(iso11649.format(reference))


def invoice_of(reference: str, invoice_ids: Iterable[str]) -> str | None:
    """The invoice among ``invoice_ids`` that ``reference`` names (None: none, more than one, or
    not a valid RF): a payment that could be either invoice's stays unallocated for a person."""
    try:
        wanted = iso11649.validate(reference)
    except ValueError:
        return None
    named = {invoice_id for invoice_id in invoice_ids if rf_reference(invoice_id) == wanted}
    return named.pop() if len(named) == 1 else None


# What an EPC QR code can carry (EPC069-12, as segno checks it): a transfer outside these is
# shown as text only, rather than failing the page.
EPC_MIN_AMOUNT, EPC_MAX_AMOUNT = Decimal("0.01"), Decimal("999999999.99")
EPC_MAX_NAME = 70


def epc_qr_possible(name: str, iban: str, bic: str | None, amount: Decimal) -> bool:
    """Whether an EPC QR code can be drawn for this transfer."""
    return (EPC_MIN_AMOUNT <= amount <= EPC_MAX_AMOUNT and amount == amount.quantize(EPC_MIN_AMOUNT)
            and 0 < len(name.strip()) <= EPC_MAX_NAME and 4 < len(iban.replace(" ", "")) <= 34
            and (not bic or len(bic.strip()) in (8, 11)))


def epc_qr(name: str, iban: str, bic: str | None, amount: Decimal, reference: str) -> segno.QRCode:
    """The EPC QR code of a credit transfer of ``amount`` EUR with the structured ``reference``."""
    return helpers.make_epc_qr(name=name, iban=iban.replace(" ", ""), amount=amount, reference=reference,
                               bic=bic or None)


def epc_qr_svg(name: str, iban: str, bic: str | None, amount: Decimal, reference: str) -> str | None:
    """The EPC QR code as an inline SVG (with a title for screen readers); None when the transfer
    does not fit one."""
    if not epc_qr_possible(name, iban, bic, amount):
        return None
    try:
        code = epc_qr(name, iban, bic, amount, reference)
    except ValueError:  # what is not checked above (a payload over 331 bytes): text only
        return None
    svg: str = code.svg_inline(
        scale=4, title=f"EPC QR code: pay {amount:.2f} EUR, reference {reference}")
    return svg
