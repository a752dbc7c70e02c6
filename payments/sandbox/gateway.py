"""
What the sandbox "provider" does when it is called, or when a buyer acts on its page.

Test cards (any expiry and CVC):
- 4242 4242 4242 4242  succeeds
- 4000 0000 0000 0002  is declined (card_declined)
- 4000 0000 0000 9995  is declined (insufficient_funds)
- 4000 0000 0000 0069  is declined (expired_card)
- 4000 0025 0000 3155  asks the buyer to confirm first
- 4000 0000 0000 0341  pays now, but every later off-session charge is declined
"""

import json
import logging
from dataclasses import dataclass
from decimal import Decimal

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from payments import signing
from payments.cards import card_normalize, luhn_valid
from payments.ids import ulid_floor
from payments.models import SandboxEvent, SandboxPayment, SandboxPaymentMethod, SandboxRefund
from payments_project.celery import enqueue_on_commit
from payments_project.request_id import HEADER as REQUEST_ID_HEADER
from payments_project.request_id import request_id_get

logger = logging.getLogger(__name__)

Status = SandboxPayment.Status


@dataclass(frozen=True)
class CardBehaviour:
    outcome: str  # "succeed" | "decline" | "confirm"
    decline_code: str = ""
    declines_off_session: bool = False


TEST_CARDS = {
    "4242424242424242": CardBehaviour("succeed"),
    "4000000000000002": CardBehaviour("decline", "card_declined"),
    "4000000000009995": CardBehaviour("decline", "insufficient_funds"),
    "4000000000000069": CardBehaviour("decline", "expired_card"),
    "4000002500003155": CardBehaviour("confirm"),
    "4000000000000341": CardBehaviour("succeed", declines_off_session=True),
}
DECLINE_MESSAGES = {
    "card_declined": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "confirmation_declined": "The buyer did not confirm the payment.",
}


class SandboxError(Exception):
    """A request the sandbox refuses (like a provider's 4xx)."""

    def __init__(self, message: str, code: str = "invalid_request"):
        super().__init__(message)
        self.message = message
        self.code = code


class CardRejected(Exception):
    """The number typed on the checkout page is not usable; nothing changed."""


def webhook_secret() -> str:
    return settings.SANDBOX_WEBHOOK_SECRET or signing.webhook_secret_derive(
        settings.SECRET_KEY, "sandbox"
    )


def checkout_url(sandbox_payment: SandboxPayment) -> str:
    return f"{settings.PUBLIC_BASE_URL}/sandbox/checkout/{sandbox_payment.id}"


# --- The provider's "API" ---------------------------------------------------------------


def payment_open(
    *,
    idempotency_key: str,
    reference: str,
    amount: Decimal,
    currency: str,
    manual_capture: bool,
    return_url: str,
    description: str = "",
    save_payment_method: bool = False,
) -> SandboxPayment:
    """Open a payment awaiting the buyer. The same idempotency key returns the same one."""
    # get_or_create reads again when a concurrent call with the same key wins the insert,
    # so both callers get the one payment, as a provider's idempotency promises.
    payment, _ = SandboxPayment.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={
            "reference": reference,
            "amount": amount,
            "currency": currency,
            "manual_capture": manual_capture,
            "return_url": return_url,
            "description": description,
            "save_payment_method": save_payment_method,
        },
    )
    if (payment.reference, payment.amount, payment.currency) != (reference, amount, currency):
        raise SandboxError("Idempotency key reused with other parameters.", "idempotency_error")
    return payment


def charge_saved_method(
    *,
    idempotency_key: str,
    reference: str,
    amount: Decimal,
    currency: str,
    payment_method_id: str,
    description: str = "",
) -> SandboxPayment:
    """
    Charge a saved card with nobody present, and answer at once: succeeded, or failed with
    a decline code (card 0341 declines every off-session charge). Only a method saved on a
    checkout that asked to keep it can be charged. The same key returns the same charge.
    """
    method = SandboxPaymentMethod.objects.filter(pk=payment_method_id).first()
    if method is None or not method.reusable:
        raise SandboxError(
            f"No saved payment method '{payment_method_id}' can be charged off-session.",
            "payment_method_unusable",
        )
    with transaction.atomic():
        payment, created = SandboxPayment.objects.get_or_create(
            idempotency_key=idempotency_key,
            defaults={
                "reference": reference,
                "amount": amount,
                "currency": currency,
                "payment_method": method,
                "off_session": True,
                "description": description,
            },
        )
        if (payment.reference, payment.amount, payment.currency) != (reference, amount, currency):
            raise SandboxError("Idempotency key reused with other parameters.", "idempotency_error")
        if not created:
            return payment  # a retry: the first answer stands
        if method.declines_off_session:
            _decline(payment, "card_declined")
        else:
            _authorize(payment)
    return payment


def payment_get(sandbox_payment_id: str) -> SandboxPayment:
    payment = (
        SandboxPayment.objects.select_related("payment_method")
        .filter(pk=sandbox_payment_id)
        .first()
    )
    if payment is None:
        raise SandboxError(f"No such payment: '{sandbox_payment_id}'.", "resource_missing")
    return payment


@transaction.atomic
def payment_capture(sandbox_payment_id: str, amount: Decimal) -> SandboxPayment:
    payment = _locked(sandbox_payment_id)
    if payment.status == Status.SUCCEEDED and payment.amount_captured == amount:
        return payment  # a retried capture
    if payment.status != Status.REQUIRES_CAPTURE:
        raise SandboxError(
            f"Payment is {payment.status}; only an authorized one can be captured.", "invalid_state"
        )
    if not Decimal(0) < amount <= payment.amount:
        raise SandboxError(
            "Capture amount must be positive and at most the authorized amount.", "amount_invalid"
        )
    payment.status = Status.SUCCEEDED
    payment.amount_captured = amount
    payment.save(update_fields=["status", "amount_captured", "updated_at"])
    _emit("payment.succeeded", payment)
    return payment


@transaction.atomic
def payment_cancel(sandbox_payment_id: str) -> SandboxPayment:
    payment = _locked(sandbox_payment_id)
    if payment.status == Status.CANCELED:
        return payment
    if payment.status not in (Status.OPEN, Status.REQUIRES_CONFIRMATION, Status.REQUIRES_CAPTURE):
        raise SandboxError(f"Payment is {payment.status} and cannot be canceled.", "invalid_state")
    payment.status = Status.CANCELED
    payment.save(update_fields=["status", "updated_at"])
    _emit("payment.canceled", payment)
    return payment


@transaction.atomic
def refund_create(
    sandbox_payment_id: str, amount: Decimal, *, idempotency_key: str, reference: str = ""
) -> SandboxRefund:
    """
    Refund at once on the sandbox's books; the caller learns the outcome only from the
    `refund.succeeded` webhook, as with card refunds that answer `pending`.
    """
    # Under the payment's lock, so two calls with one key cannot both insert.
    payment = _locked(sandbox_payment_id)
    existing = SandboxRefund.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    if payment.status != Status.SUCCEEDED:
        raise SandboxError(
            f"Payment is {payment.status}; only a paid one can be refunded.", "invalid_state"
        )
    if not Decimal(0) < amount <= payment.amount_captured - payment.amount_refunded:
        raise SandboxError("Refund amount exceeds what is left to refund.", "amount_too_large")
    # Settled at once on the sandbox's side; the news travels by webhook.
    refund = SandboxRefund.objects.create(
        idempotency_key=idempotency_key,
        reference=reference,
        payment=payment,
        amount=amount,
        status="succeeded",
    )
    payment.amount_refunded += amount
    payment.save(update_fields=["amount_refunded", "updated_at"])
    _emit_object("refund.succeeded", refund_object(refund))
    return refund


def refund_object(refund: SandboxRefund) -> dict:
    return {
        "id": refund.id,
        "object": "sandbox.refund",
        "payment": refund.payment_id,
        "reference": refund.reference,
        "status": refund.status,
        "amount": str(refund.amount),
        "currency": refund.payment.currency,
        "created": _timestamp(refund.created_at),
    }


# --- Lists (what a provider's list API gives; reconciliation reads them) --------------------

LIST_LIMIT_MAX = 5000

# No timestamps and no Decimals: decoding them is most of the cost of a long list. A
# sandbox object's creation time is its id's (a ULID), exact to the millisecond, and the
# amounts leave as the strings the answer carries anyway, written by the database.
_PAYMENT_LIST_FIELDS = (
    "id", "reference", "status", "amount_text", "currency", "manual_capture",
    "amount_captured_text", "amount_refunded_text", "payment_method_id",
    "payment_method__card_brand", "payment_method__card_last4", "failure_code",
    "failure_message",
)  # fmt: skip
_AS_TEXT = {
    f"{name}_text": Cast(name, TextField())
    for name in ("amount", "amount_captured", "amount_refunded")
}
_CROCKFORD = {char: value for value, char in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}


def payments_list(*, created_gte, created_lt, starting_after: str = "", limit: int = 100) -> dict:
    """
    One page of the sandbox's payments made in [created_gte, created_lt), oldest first,
    shaped like a provider's list answer (`data`, `has_more`); the next page starts after
    the last id. Rows are read as plain tuples, not models: a reconciliation walks
    millions of them.
    """
    rows = _page(SandboxPayment, "sbx_pay", created_gte, created_lt, starting_after, limit)
    rows = list(rows.annotate(**_AS_TEXT).values_list(*_PAYMENT_LIST_FIELDS)[: limit + 1])
    return {
        "object": "list",
        "data": [_payment_object_from_row(row) for row in rows[:limit]],
        "has_more": len(rows) > limit,
    }


def refunds_list(*, created_gte, created_lt, starting_after: str = "", limit: int = 100) -> dict:
    """One page of the sandbox's refunds made in [created_gte, created_lt), like `payments_list`."""
    rows = _page(SandboxRefund, "sbx_re", created_gte, created_lt, starting_after, limit)
    fields = ("id", "payment_id", "reference", "status", "amount", "payment__currency")
    rows = list(rows.values_list(*fields)[: limit + 1])
    return {
        "object": "list",
        "data": [
            {
                "id": refund_id,
                "object": "sandbox.refund",
                "payment": payment_id,
                "reference": reference,
                "status": status,
                "amount": str(amount),
                "currency": currency,
                "created": _id_timestamp(refund_id),
            }
            for refund_id, payment_id, reference, status, amount, currency in rows[:limit]
        ],
        "has_more": len(rows) > limit,
    }


def _page(model, prefix: str, created_gte, created_lt, starting_after: str, limit: int):
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise SandboxError(f"limit must be between 1 and {LIST_LIMIT_MAX}.", "parameter_invalid")
    # Ids are ULIDs that start with the creation time, so the time range is an id range:
    # every page is a seek on the primary key, the millionth as cheap as the first.
    rows = model.objects.filter(
        pk__gte=f"{prefix}_{ulid_floor(created_gte)}", pk__lt=f"{prefix}_{ulid_floor(created_lt)}"
    )
    if starting_after:
        rows = rows.filter(pk__gt=starting_after)
    return rows.order_by("pk")


def _payment_object_from_row(row: tuple) -> dict:
    (
        payment_id, reference, status, amount, currency, manual_capture, amount_captured,
        amount_refunded, method_id, brand, last4, failure_code, failure_message,
    ) = row  # fmt: skip
    return {
        "id": payment_id,
        "object": "sandbox.payment",
        "reference": reference,
        "status": status,
        "amount": amount,
        "currency": currency,
        "manual_capture": manual_capture,
        "amount_captured": amount_captured,
        "amount_refunded": amount_refunded,
        "payment_method": {"id": method_id, "brand": brand, "last4": last4} if method_id else None,
        "failure_code": failure_code,
        "failure_message": failure_message,
        "created": _id_timestamp(payment_id),
    }


def _timestamp(moment) -> int | None:
    return int(moment.timestamp()) if moment else None


def _id_timestamp(object_id: str) -> int:
    """The Unix time (seconds) an id was made: its ULID's first 48 bits are milliseconds."""
    milliseconds = 0
    for char in object_id.rpartition("_")[2][:10]:
        milliseconds = milliseconds * 32 + _CROCKFORD[char]
    return milliseconds // 1000


# --- The hosted checkout page -------------------------------------------------------------


@transaction.atomic
def checkout_submit(sandbox_payment_id: str, card_number: str) -> SandboxPayment:
    """The buyer submitted a card. Unknown or malformed numbers change nothing."""
    payment = _locked(sandbox_payment_id)
    if payment.status != Status.OPEN:
        return payment  # a double submit, or a stale tab: show the current state
    number = card_normalize(card_number)
    if not luhn_valid(number):
        raise CardRejected("Your card number is invalid.")
    behaviour = TEST_CARDS.get(number)
    if behaviour is None:
        raise CardRejected("This is not a sandbox test card. Try 4242 4242 4242 4242.")
    # Only the last four digits are kept, here as anywhere else.
    method = SandboxPaymentMethod.objects.create(
        card_brand="visa",
        card_last4=number[-4:],
        declines_off_session=behaviour.declines_off_session,
    )
    payment.payment_method = method
    if behaviour.outcome == "confirm":
        payment.status = Status.REQUIRES_CONFIRMATION
        payment.save(update_fields=["payment_method", "status", "updated_at"])
        return payment
    if behaviour.outcome == "decline":
        _decline(payment, behaviour.decline_code)
    else:
        _authorize(payment)
    return payment


@transaction.atomic
def checkout_confirm(sandbox_payment_id: str, approve: bool) -> SandboxPayment:
    payment = _locked(sandbox_payment_id)
    if payment.status != Status.REQUIRES_CONFIRMATION:
        return payment
    if approve:
        _authorize(payment)
    else:
        _decline(payment, "confirmation_declined")
    return payment


def _authorize(payment: SandboxPayment) -> None:
    if payment.save_payment_method and not payment.payment_method.reusable:
        payment.payment_method.reusable = True
        payment.payment_method.save(update_fields=["reusable"])
    if payment.manual_capture:
        payment.status = Status.REQUIRES_CAPTURE
        event = "payment.requires_capture"
    else:
        payment.status = Status.SUCCEEDED
        payment.amount_captured = payment.amount
        event = "payment.succeeded"
    payment.save(update_fields=["payment_method", "status", "amount_captured", "updated_at"])
    _emit(event, payment)


def _decline(payment: SandboxPayment, code: str) -> None:
    payment.status = Status.FAILED
    payment.failure_code = code
    payment.failure_message = DECLINE_MESSAGES[code]
    payment.save(
        update_fields=["payment_method", "status", "failure_code", "failure_message", "updated_at"]
    )
    _emit("payment.failed", payment)


def _locked(sandbox_payment_id: str) -> SandboxPayment:
    payment = SandboxPayment.objects.select_for_update().filter(pk=sandbox_payment_id).first()
    if payment is None:
        raise SandboxError(f"No such payment: '{sandbox_payment_id}'.", "resource_missing")
    return payment


# --- Webhooks the sandbox sends -------------------------------------------------------------


def payment_object(payment: SandboxPayment) -> dict:
    method = payment.payment_method
    return {
        "id": payment.id,
        "object": "sandbox.payment",
        "reference": payment.reference,
        "status": payment.status,
        "amount": str(payment.amount),
        "currency": payment.currency,
        "manual_capture": payment.manual_capture,
        "amount_captured": str(payment.amount_captured),
        "amount_refunded": str(payment.amount_refunded),
        "payment_method": (
            {"id": method.id, "brand": method.card_brand, "last4": method.card_last4}
            if method
            else None
        ),
        "failure_code": payment.failure_code,
        "failure_message": payment.failure_message,
        "created": _timestamp(payment.created_at),
        "updated": _timestamp(payment.updated_at),
    }


def _emit(event_type: str, payment: SandboxPayment) -> SandboxEvent:
    return _emit_object(event_type, payment_object(payment))


def _emit_object(event_type: str, obj: dict) -> SandboxEvent:
    event = SandboxEvent(type=event_type)
    event.payload = {
        "id": event.id,
        "type": event_type,
        "created": int(timezone.now().timestamp()),
        "data": {"object": obj},
    }
    event.save()
    from payments.tasks import sandbox_event_send

    enqueue_on_commit(sandbox_event_send, event.id)
    return event


def webhook_url() -> str:
    return settings.SANDBOX_WEBHOOK_URL or f"{settings.PUBLIC_BASE_URL}/webhooks/sandbox"


def event_send(event_id: str) -> bool:
    """POST one event to our webhook endpoint. True when delivered (now or before)."""
    event = SandboxEvent.objects.filter(pk=event_id).first()
    if event is None or event.delivered_at is not None:
        return True
    body = json.dumps(event.payload, separators=(",", ":"))
    headers = {"Content-Type": "application/json", "User-Agent": "payments-sandbox/1"}
    if request_id := request_id_get():
        # The webhook is logged under the id of the request that caused it, as a
        # provider's dashboard would link the two.
        headers[REQUEST_ID_HEADER] = request_id
    headers.update(signing.webhook_headers(webhook_secret(), event.id, body))
    error = ""
    try:
        response = requests.post(webhook_url(), data=body.encode(), headers=headers, timeout=10)
        if not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code}: {response.text[:200]}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    SandboxEvent.objects.filter(pk=event.pk).update(
        attempts=F("attempts") + 1,
        last_error=error,
        delivered_at=None if error else timezone.now(),
    )
    if error:
        logger.warning("Sandbox webhook %s not delivered: %s", event.id, error)
    return not error
