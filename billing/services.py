"""
Invoices: issued, numbered, paid, voided and credited. Views, tasks, the admin and the
outcome listener call these.

Numbers are gapless per merchant, mode and year: the next one is taken under the
sequence row's lock, in the transaction that finalizes the invoice, so a finalization
that rolls back gives its number back and two concurrent ones queue for the lock.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import (
    BillingProfile,
    BillingReason,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    InvoiceStatus,
)
from payments import outcomes
from payments.models import Customer, Merchant, Payment, PaymentStatus, Refund

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = {True: "INV", False: "TEST"}  # by livemode, for merchants without a profile


@dataclass(frozen=True)
class Line:
    description: str
    unit_amount: Decimal
    quantity: int = 1
    plan_id: str = ""
    period_start: datetime | None = None
    period_end: datetime | None = None


def invoice_create(
    *,
    merchant: Merchant,
    livemode: bool,
    currency: str,
    lines: list[Line],
    customer: Customer | None = None,
    billing_reason: str = BillingReason.PAYMENT,
    subscription_id: str = "",
    period_start: datetime | None = None,
    period_end: datetime | None = None,
    description: str = "",
    finalize: bool = False,
) -> Invoice:
    """A draft invoice with its lines; `finalize` numbers and opens it at once."""
    if not lines:
        raise ValueError("An invoice needs at least one line")
    subtotal = sum((line.unit_amount * line.quantity for line in lines), Decimal(0))
    invoice = Invoice.objects.create(
        merchant=merchant,
        livemode=livemode,
        customer=customer,
        currency=currency,
        subtotal=subtotal,
        total=subtotal,
        billing_reason=billing_reason,
        subscription_id=subscription_id,
        period_start=period_start,
        period_end=period_end,
        description=description[:1000],
    )
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            description=line.description[:500],
            quantity=line.quantity,
            unit_amount=line.unit_amount,
            amount=line.unit_amount * line.quantity,
            plan_id=line.plan_id,
            period_start=line.period_start,
            period_end=line.period_end,
        )
        for line in lines
    )
    if finalize:
        invoice = invoice_finalize(invoice=invoice)
    return invoice


def invoice_lock(invoice_id: str) -> Invoice:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("invoice_lock needs a transaction")
    return Invoice.objects.select_for_update().get(pk=invoice_id)


@transaction.atomic
def invoice_finalize(*, invoice: Invoice) -> Invoice:
    """Give a draft its number and freeze the customer's and merchant's details on it."""
    invoice = invoice_lock(invoice.pk)
    if invoice.status != InvoiceStatus.DRAFT:
        return invoice
    _invoice_issue(invoice)
    invoice.status = InvoiceStatus.OPEN
    invoice.save(
        update_fields=[
            "number",
            "status",
            "finalized_at",
            "customer_details",
            "merchant_details",
            "updated_at",
        ]
    )
    return invoice


def _invoice_issue(invoice: Invoice) -> None:
    """Number and snapshot a locked draft (the caller saves)."""
    now = timezone.now()
    invoice.number = invoice_number_next(
        merchant=invoice.merchant, livemode=invoice.livemode, year=now.year
    )
    invoice.finalized_at = now
    invoice.customer_details = _customer_details(invoice.customer)
    invoice.merchant_details = merchant_details(invoice.merchant)


def invoice_number_next(*, merchant: Merchant, livemode: bool, year: int) -> str:
    """
    The merchant's next invoice number for the year, `{PREFIX}-{YYYY}-{000001}`. Must run
    in the transaction that issues the invoice: the sequence row stays locked until it
    ends, which is what keeps the numbers gapless under concurrency.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("invoice numbers are taken inside the issuing transaction")
    where = {"merchant": merchant, "livemode": livemode, "year": year}
    sequence = InvoiceSequence.objects.select_for_update().filter(**where).first()
    if sequence is None:
        try:
            with transaction.atomic():  # a savepoint: losing the first-of-year race is fine
                InvoiceSequence.objects.create(**where)
        except IntegrityError:
            pass
        sequence = InvoiceSequence.objects.select_for_update().get(**where)
    sequence.last_number += 1
    sequence.save(update_fields=["last_number"])
    return f"{_prefix(merchant, livemode)}-{year}-{sequence.last_number:06d}"


def _prefix(merchant: Merchant, livemode: bool) -> str:
    profile = BillingProfile.objects.filter(merchant=merchant).first()
    if profile is None:
        return DEFAULT_PREFIX[livemode]
    return profile.invoice_prefix if livemode else profile.test_invoice_prefix


def _customer_details(customer: Customer | None) -> dict:
    if customer is None:
        return {}
    return {"name": customer.name, "email": customer.email, "external_id": customer.external_id}


def merchant_details(merchant: Merchant) -> dict:
    profile = BillingProfile.objects.filter(merchant=merchant).first()
    details = {"name": merchant.name}
    if profile is not None:
        details.update(
            legal_name=profile.legal_name,
            address=profile.address,
            tax_id=profile.tax_id,
            email=profile.email,
            footer=profile.footer,
        )
    return details


def invoice_attach_payment(*, invoice: Invoice, payment: Payment) -> Invoice:
    """Record `payment` as the invoice's current attempt to be paid."""
    with transaction.atomic():
        invoice = invoice_lock(invoice.pk)
        if invoice.status not in (InvoiceStatus.DRAFT, InvoiceStatus.OPEN):
            raise ValueError(f"Invoice {invoice.pk} is {invoice.status}: it takes no payments")
        invoice.payment = payment
        invoice.attempt_count += 1
        invoice.save(update_fields=["payment", "attempt_count", "updated_at"])
        return invoice


@transaction.atomic
def invoice_void(*, invoice: Invoice) -> Invoice:
    """Cancel what the invoice asked for. A draft or open invoice only; its number stays."""
    invoice = invoice_lock(invoice.pk)
    if invoice.status not in (InvoiceStatus.DRAFT, InvoiceStatus.OPEN):
        return invoice
    invoice.status = InvoiceStatus.VOID
    invoice.voided_at = timezone.now()
    invoice.save(update_fields=["status", "voided_at", "updated_at"])
    return invoice


def invoice_pay(*, payment: Payment) -> Invoice:
    """
    The invoice `payment` paid, marked paid (numbered first if it was a draft). A payment
    that no open invoice awaits (a one-off payment, or one that came in after its invoice
    was voided) gets a new invoice of its own, issued paid. Idempotent per payment.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("invoices are paid inside the transaction of the payment")
    paid = Invoice.objects.filter(payment=payment, status=InvoiceStatus.PAID).first()
    if paid is not None:
        return paid
    awaiting = (
        Invoice.objects.select_for_update()
        .filter(payment=payment, status__in=[InvoiceStatus.DRAFT, InvoiceStatus.OPEN])
        .first()
    )
    if awaiting is None:
        awaiting = _invoice_for_payment(payment)
    return _invoice_mark_paid(awaiting, payment)


def _invoice_for_payment(payment: Payment) -> Invoice:
    """A draft for a payment nothing billed beforehand: its line items, or one line."""
    voided = (
        Invoice.objects.filter(payment=payment, status=InvoiceStatus.VOID)
        .prefetch_related("lines")
        .first()
    )
    if voided is not None:
        # Paid after its invoice was voided: the money needs a document of its own.
        lines = [
            Line(
                description=line.description,
                unit_amount=line.unit_amount,
                quantity=line.quantity,
                plan_id=line.plan_id,
                period_start=line.period_start,
                period_end=line.period_end,
            )
            for line in voided.lines.all()
        ]
    elif payment.amount_captured and payment.amount_captured < payment.amount:
        # Captured in part: the invoice bills what was taken, not what was authorized.
        lines = [
            Line(
                description=payment.description or f"Payment {payment.pk}",
                unit_amount=payment.amount_captured,
            )
        ]
    elif payment.line_items:
        lines = [
            Line(
                description=item["description"],
                unit_amount=Decimal(item["unit_amount"]),
                quantity=int(item["quantity"]),
            )
            for item in payment.line_items
        ]
    else:
        lines = [
            Line(
                description=payment.description or f"Payment {payment.pk}",
                unit_amount=payment.amount,
            )
        ]
    invoice = invoice_create(
        merchant=payment.merchant,
        livemode=payment.livemode,
        currency=payment.currency,
        lines=lines,
        customer=payment.customer,
        billing_reason=voided.billing_reason if voided else BillingReason.PAYMENT,
        description=payment.description,
    )
    invoice.payment = payment
    invoice.attempt_count = 1
    invoice.save(update_fields=["payment", "attempt_count"])
    return invoice


def _invoice_mark_paid(invoice: Invoice, payment: Payment) -> Invoice:
    invoice = invoice_lock(invoice.pk)
    fields = ["status", "amount_paid", "paid_at", "payment", "updated_at"]
    if invoice.status == InvoiceStatus.DRAFT:
        _invoice_issue(invoice)
        fields += ["number", "finalized_at", "customer_details", "merchant_details"]
    invoice.status = InvoiceStatus.PAID
    invoice.amount_paid = payment.amount_captured or payment.amount
    invoice.paid_at = timezone.now()
    invoice.payment = payment
    invoice.save(update_fields=fields)
    invoice_announce(invoice, "invoice.paid")
    return invoice


def credit_note_issue(*, refund: Refund) -> CreditNote | None:
    """
    A credit note against the invoice the refunded payment paid, once per refund. None
    when that payment has no invoice (paid before invoicing was switched on).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("credit notes are issued inside the transaction of the refund")
    existing = CreditNote.objects.filter(refund_id=refund.pk).first()
    if existing is not None:
        return existing
    invoice = (
        Invoice.objects.select_for_update()
        .filter(payment_id=refund.payment_id, status=InvoiceStatus.PAID)
        .first()
    )
    if invoice is None:
        logger.warning("Refund %s: payment %s has no paid invoice", refund.pk, refund.payment_id)
        return None
    sequence = invoice.credit_notes.count() + 1
    note = CreditNote.objects.create(
        invoice=invoice,
        number=f"{invoice.number}-CN{sequence}",
        refund_id=refund.pk,
        amount=refund.amount,
        currency=refund.currency,
        reason=refund.reason,
    )
    invoice.amount_credited += refund.amount
    invoice.save(update_fields=["amount_credited", "updated_at"])
    return note


def invoice_announce(invoice: Invoice, event_type: str) -> None:
    from billing.serializers import InvoiceOutputSerializer

    outcomes.announce_object(invoice, event_type, InvoiceOutputSerializer)


def invoice_on_outcome(outcome: outcomes.Outcome) -> None:
    """
    The outcomes listener: every succeeded payment is invoiced (paid), every succeeded
    refund of an invoiced payment gets a credit note; in the transaction of the change.
    """
    if outcome.type == "payment.succeeded":
        payment = Payment.objects.select_related("merchant", "customer").get(pk=outcome.object_id)
        if payment.status in (
            PaymentStatus.SUCCEEDED,
            PaymentStatus.PARTIALLY_REFUNDED,
            PaymentStatus.REFUNDED,
        ):
            invoice_pay(payment=payment)
    elif outcome.type == "refund.succeeded":
        credit_note_issue(refund=Refund.objects.get(pk=outcome.object_id))
