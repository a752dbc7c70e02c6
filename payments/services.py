"""Write operations of the payments app. Views, admin, tasks and commands call these."""

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from payments import credentials, money, outcomes, providers
from payments.errors import (
    Conflict,
    ErrorCode,
    InvalidState,
    ProviderUnavailable,
    ValidationFailed,
)
from payments.models import (
    ORDER_HOLDING_STATUSES,
    REFUND_HOLDING_STATUSES,
    APIKey,
    CreditTransaction,
    Customer,
    CustomerBalance,
    Merchant,
    Payment,
    PaymentEvent,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from payments.providers.base import (
    CheckoutRequest,
    ProviderDeclined,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    ProviderTransientError,
    Receipt,
    ReceiptItem,
    SavedMethodCharge,
)
from payments_project import metrics

logger = logging.getLogger(__name__)

# last_used_at is a hint for humans; writing it on every request would turn each read into
# a write, so it is refreshed at most once per this interval.
API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)


def merchant_create(*, name: str, default_provider: str = "sandbox") -> Merchant:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed(
            "A merchant needs a name.", code=ErrorCode.PARAMETER_MISSING, param="name"
        )
    return Merchant.objects.create(name=name, default_provider=default_provider)


@transaction.atomic
def merchant_onboard(*, name: str, livemode: bool = False) -> tuple[Merchant, str, str]:
    """Create a merchant with a fresh secret and publishable key; returns both raw keys."""
    merchant = merchant_create(name=name)
    _, secret_key = api_key_create(merchant=merchant, kind=APIKey.Kind.SECRET, livemode=livemode)
    _, publishable_key = api_key_create(
        merchant=merchant, kind=APIKey.Kind.PUBLISHABLE, livemode=livemode
    )
    return merchant, secret_key, publishable_key


def api_key_create(
    *,
    merchant: Merchant,
    kind: str,
    livemode: bool = False,
    name: str = "",
    raw_key: str | None = None,
) -> tuple[APIKey, str]:
    """
    Issue a key for `merchant`. Returns the stored row and the raw key, which exists only
    in this return value: show it to the person once and forget it.
    """
    if kind not in APIKey.Kind.values:
        raise ValidationFailed(
            f"Key type must be one of: {', '.join(APIKey.Kind.values)}.", param="type"
        )
    if raw_key is None:
        raw_key = credentials.key_generate(kind, livemode)
    elif not raw_key.startswith(credentials.key_prefix(kind, livemode)) or not (
        credentials.key_looks_valid(raw_key)
    ):
        raise ValidationFailed("The key does not match its type and mode.", param="key")
    api_key = APIKey.objects.create(
        merchant=merchant,
        kind=kind,
        livemode=livemode,
        name=name,
        prefix=raw_key[: credentials.DISPLAY_PREFIX_LENGTH],
        key_hash=credentials.key_hash(raw_key),
    )
    return api_key, raw_key


def api_key_revoke(*, api_key: APIKey) -> APIKey:
    """Revoke a key for good; requests with it are refused from the next one on."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_touch(*, api_key: APIKey) -> None:
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < API_KEY_TOUCH_INTERVAL:
        return
    APIKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


def customer_create(
    *,
    merchant: Merchant,
    external_id: str,
    email: str = "",
    name: str = "",
    metadata: dict | None = None,
) -> Customer:
    if Customer.objects.filter(merchant=merchant, external_id=external_id).exists():
        raise _customer_exists(external_id)
    try:
        # A savepoint, so that losing a race to a concurrent create leaves the caller's
        # transaction usable.
        with transaction.atomic():
            return Customer.objects.create(
                merchant=merchant,
                external_id=external_id,
                email=email,
                name=name,
                metadata=metadata or {},
            )
    except IntegrityError:
        raise _customer_exists(external_id) from None


def _customer_exists(external_id: str) -> Conflict:
    return Conflict(
        f"A customer with external_id '{external_id}' already exists.", param="external_id"
    )


def customer_resolve(*, merchant: Merchant, reference: str | dict) -> Customer:
    """
    The customer a payment names: an id (`cus_…`) of this merchant, or
    `{"external_id", "email", "name"}`, found by external id or created.
    """
    if isinstance(reference, str):
        customer = Customer.objects.filter(merchant=merchant, pk=reference).first()
        if customer is None:
            raise ValidationFailed(f"No such customer: '{reference}'.", param="customer")
        return customer
    customer = Customer.objects.filter(
        merchant=merchant, external_id=reference["external_id"]
    ).first()
    if customer is not None:
        return customer
    try:
        return customer_create(merchant=merchant, **reference)
    except Conflict:  # created concurrently by another request: use that one
        return Customer.objects.get(merchant=merchant, external_id=reference["external_id"])


# --- Payments ---------------------------------------------------------------------------

# Which status may follow which. Terminal states (failed, canceled, refunded) have none.
PAYMENT_TRANSITIONS = {
    PaymentStatus.PENDING: {
        PaymentStatus.REQUIRES_CAPTURE,
        PaymentStatus.SUCCEEDED,
        PaymentStatus.FAILED,
        PaymentStatus.CANCELED,
    },
    PaymentStatus.REQUIRES_CAPTURE: {
        PaymentStatus.SUCCEEDED,
        PaymentStatus.CANCELED,
        PaymentStatus.FAILED,
    },
    PaymentStatus.SUCCEEDED: {PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED},
    PaymentStatus.PARTIALLY_REFUNDED: {PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED},
}
COMPLETING_STATUSES = {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED}


def payment_can_transition(from_status: str, to_status: str) -> bool:
    return to_status in PAYMENT_TRANSITIONS.get(from_status, ())


def payment_lock(payment_id: str) -> Payment:
    """The payment row, locked until the surrounding transaction ends."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("payment_lock needs a transaction")
    return Payment.objects.select_for_update().get(pk=payment_id)


def payment_event_record(
    *, payment: Payment, type: str, source: str, actor: str = "", data: dict | None = None,
    from_status: str = "", to_status: str = "",
) -> PaymentEvent:  # fmt: skip
    event = PaymentEvent.objects.create(
        payment=payment,
        type=type,
        source=source,
        actor=actor,
        data=data or {},
        from_status=from_status,
        to_status=to_status,
    )
    # One line per timeline step: with the request id on every line, a payment's path from
    # the API call through its tasks and webhooks reads as one.
    logger.info(
        "Payment %s: %s (%s%s)",
        payment.pk,
        type if not to_status or to_status == type else f"{type} → {to_status}",
        source,
        f" {actor}" if actor else "",
        extra={"payment_id": payment.pk, "event": type, "source": source},
    )
    return event


def payment_transition(
    *,
    payment: Payment,
    to_status: str,
    source: str,
    actor: str = "",
    data: dict | None = None,
    **changes,
) -> Payment:
    """
    Move a locked payment (see `payment_lock`) to `to_status`, with any field `changes`,
    and record the step in its timeline. The only place `Payment.status` is assigned.
    Raises InvalidState (409) for a move the state machine does not allow.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("payment_transition needs a transaction holding the row lock")
    from_status = payment.status
    if not payment_can_transition(from_status, to_status):
        raise InvalidState(
            f"The payment is {from_status}; it cannot become {to_status}.", param=None
        )
    payment.status = to_status
    for name, value in changes.items():
        setattr(payment, name, value)
    fields = {"status", "updated_at", *changes}
    if to_status in COMPLETING_STATUSES and payment.completed_at is None:
        payment.completed_at = timezone.now()
        fields.add("completed_at")
    payment.save(update_fields=sorted(fields))
    payment_event_record(
        payment=payment,
        type=to_status,
        source=source,
        actor=actor,
        data=data,
        from_status=from_status,
        to_status=to_status,
    )
    if to_status in ANNOUNCED_STATUSES:
        outcome_announce(payment, f"payment.{to_status}")
    return payment


# The payment statuses a merchant is told about (as `payment.<status>` events).
ANNOUNCED_STATUSES = {
    PaymentStatus.REQUIRES_CAPTURE,
    PaymentStatus.SUCCEEDED,
    PaymentStatus.FAILED,
    PaymentStatus.CANCELED,
}


def outcome_announce(obj: Payment | Refund, event_type: str) -> None:
    """
    Tell the outcome listeners (callbacks, ledger), inside this transaction, with the
    object as the API renders it at this moment.
    """
    from payments.serializers import PaymentOutputSerializer, RefundOutputSerializer

    serializer = PaymentOutputSerializer if isinstance(obj, Payment) else RefundOutputSerializer
    outcomes.announce_object(obj, event_type, serializer)


def provider_check(provider: str, livemode: bool) -> None:
    """Refuse a provider this deployment does not have on, or not for this mode."""
    if provider not in providers.ALL_PROVIDERS:
        raise ValidationFailed(f"Unknown provider: '{provider}'.", param="provider")
    if not providers.provider_enabled(provider):
        raise ValidationFailed(
            f"The {provider} provider is not enabled on this deployment.",
            code=ErrorCode.PROVIDER_NOT_ENABLED,
            param="provider",
        )
    if not providers.provider_serves_mode(provider, livemode):
        # A live key must never get a sandbox "payment" that a test card can pay, and a
        # test key must never move real money.
        mode = "live" if livemode else "test"
        raise ValidationFailed(
            f"The {provider} provider does not take {mode}-mode payments on this deployment.",
            code=ErrorCode.PROVIDER_NOT_ENABLED,
            param="provider",
        )


@dataclass(frozen=True)
class SavedMethod:
    """A payment method the provider keeps for us (from an earlier checkout)."""

    payment_method_id: str
    provider_customer_id: str = ""


@transaction.atomic
def payment_create(
    *,
    merchant: Merchant,
    amount: Decimal | str,
    currency: str,
    provider: str | None = None,
    customer: Customer | None = None,
    order_id: str = "",
    reference: str = "",
    description: str = "",
    metadata: dict | None = None,
    return_url: str = "",
    capture: bool = True,
    livemode: bool = False,
    actor: str = "",
    line_items: list[dict] | None = None,
    save_payment_method: bool = False,
    saved_method: SavedMethod | None = None,
) -> Payment:
    """
    Record a new pending payment and, once committed, ask its provider for a checkout in a
    Celery task. Returns at once: provider latency never reaches the caller.

    With `saved_method` the payment is charged off-session instead (renewals): the task
    charges that method directly and there is no checkout page.
    """
    currency = money.currency_normalize(currency)
    amount = money.amount_coerce(amount, currency)
    line_items = line_items_normalize(line_items or [], amount, currency)
    provider = provider or merchant.default_provider
    provider_check(provider, livemode)
    receipt_needed = provider == providers.YOOKASSA and merchant.receipts_enabled
    if receipt_needed and (customer is None or not customer.email):
        # A fiscal receipt needs the buyer's contact; YooKassa would refuse it later.
        raise ValidationFailed(
            "Receipts are enabled: the payment needs a customer with an email.",
            param="customer",
        )
    if provider == providers.CREDITS and customer is None:
        raise ValidationFailed("Paying with credits needs a customer.", param="customer")
    if provider == providers.CREDITS and not capture:
        raise ValidationFailed("Credits are taken at once; capture must be true.", param="capture")
    if saved_method is not None and (provider == providers.CREDITS or not capture):
        raise ValidationFailed(
            "Off-session charges are card payments captured at once.", param="provider"
        )
    if customer is not None and customer.merchant_id != merchant.pk:
        raise ValidationFailed("No such customer.", param="customer")
    if order_id and _order_is_held(merchant, order_id):
        raise _order_conflict(order_id)
    try:
        with transaction.atomic():
            payment = Payment.objects.create(
                merchant=merchant,
                customer=customer,
                livemode=livemode,
                amount=amount,
                currency=currency,
                capture=capture,
                provider=provider,
                order_id=order_id,
                reference=reference,
                description=description,
                metadata=metadata or {},
                return_url=return_url,
                line_items=line_items,
                save_payment_method=save_payment_method and saved_method is None,
                off_session=saved_method is not None,
                provider_payment_method_id=saved_method.payment_method_id if saved_method else "",
                provider_customer_id=saved_method.provider_customer_id if saved_method else "",
            )
    except IntegrityError:
        if order_id and _order_is_held(merchant, order_id):
            raise _order_conflict(order_id) from None
        raise
    payment_event_record(
        payment=payment,
        type="created",
        source=PaymentEvent.Source.API,
        actor=actor,
        to_status=payment.status,
        data={
            "amount": money.amount_format(amount, currency),
            "currency": currency,
            "provider": provider,
        },
    )
    metrics.payment_created_count(payment)
    if provider == providers.CREDITS:
        return _payment_pay_with_credits(payment, actor=actor)
    _checkout_dispatch_on_commit(payment)
    return payment


LINE_ITEMS_MAX = 100


def line_items_normalize(items: list[dict], amount: Decimal, currency: str) -> list[dict]:
    """
    Check that the lines (`description`, `quantity`, `unit_amount`) add up to the amount,
    and return them in stored form, each with its line `amount`.
    """
    if len(items) > LINE_ITEMS_MAX:
        raise ValidationFailed(f"At most {LINE_ITEMS_MAX} line items.", param="line_items")
    lines, total = [], Decimal(0)
    for index, item in enumerate(items):
        unit = money.amount_coerce(item["unit_amount"], currency)
        quantity = int(item.get("quantity", 1))
        if quantity < 1:
            raise ValidationFailed(
                "Quantity must be at least 1.", param=f"line_items.{index}.quantity"
            )
        line_amount = unit * quantity
        total += line_amount
        lines.append(
            {
                "description": item["description"],
                "quantity": quantity,
                "unit_amount": money.amount_format(unit, currency),
                "amount": money.amount_format(line_amount, currency),
            }
        )
    if lines and total != amount:
        raise ValidationFailed(
            f"The line items add up to {money.amount_format(total, currency)}, "
            f"not the amount {money.amount_format(amount, currency)}.",
            param="line_items",
        )
    return lines


def _order_is_held(merchant: Merchant, order_id: str) -> bool:
    return Payment.objects.filter(
        merchant=merchant, order_id=order_id, status__in=ORDER_HOLDING_STATUSES
    ).exists()


def _order_conflict(order_id: str) -> Conflict:
    return Conflict(
        f"Order '{order_id}' already has a payment that is open or paid.",
        code=ErrorCode.ORDER_ALREADY_PAID,
        param="order_id",
    )


def _checkout_dispatch_on_commit(payment: Payment) -> None:
    from payments.tasks import payment_charge_dispatch, payment_checkout_dispatch
    from payments_project.celery import enqueue_on_commit

    task = payment_charge_dispatch if payment.off_session else payment_checkout_dispatch
    enqueue_on_commit(task, payment.pk)


def pay_link_url(payment: Payment) -> str:
    return f"{settings.PUBLIC_BASE_URL}/pay/{payment.pk}"


def payment_checkout_start(*, payment_id: str) -> Payment | None:
    """
    Ask the provider for the payment's checkout and store where to send the buyer.
    Idempotent: a payment that has its checkout (or is no longer pending) is left alone,
    and the provider gets the same idempotency key on every try.
    Raises ProviderTransientError when worth retrying later.
    """
    payment = Payment.objects.select_related("customer", "merchant").filter(pk=payment_id).first()
    if (
        payment is None
        or payment.status != PaymentStatus.PENDING
        or payment.provider_checkout_url
        or payment.off_session
    ):
        return payment
    request = CheckoutRequest(
        payment_id=payment.pk,
        amount=payment.amount,
        currency=payment.currency,
        capture=payment.capture,
        # The buyer comes back to our pay link, which waits for the provider's verdict.
        return_url=pay_link_url(payment) + "?returned=1",
        description=payment.description,
        customer_email=payment.customer.email if payment.customer else "",
        save_payment_method=payment.save_payment_method,
        metadata={"payment_id": payment.pk},
        receipt=_receipt_for(payment),
    )
    result, failed = _provider_dispatch(
        payment,
        lambda provider: provider.checkout_create(
            request, idempotency_key=f"checkout-{payment.pk}"
        ),
        actor="payment_checkout_dispatch",
    )
    if failed is not None:
        return failed
    with transaction.atomic():
        payment = payment_lock(payment.pk)
        moved_on = payment.status != PaymentStatus.PENDING or bool(payment.provider_checkout_url)
        if not moved_on:
            payment.provider_payment_id = result.provider_payment_id
            payment.provider_checkout_id = result.checkout_id
            payment.provider_checkout_url = result.checkout_url
            payment.save(
                update_fields=[
                    "provider_payment_id",
                    "provider_checkout_id",
                    "provider_checkout_url",
                    "updated_at",
                ]
            )
            payment_event_record(
                payment=payment,
                type="checkout_created",
                source=PaymentEvent.Source.TASK,
                actor="payment_checkout_dispatch",
                data={
                    "provider": payment.provider,
                    "provider_payment_id": result.provider_payment_id,
                },
            )
    if moved_on and payment.provider_checkout_id != result.checkout_id:
        # Canceled while the provider was answering: the checkout it just made (which
        # nobody will be shown) must not stay payable.
        _close_orphan_checkout(payment, result)
    return payment


def payment_charge_start(*, payment_id: str) -> Payment | None:
    """
    Charge an off-session payment's saved method and settle the payment with the answer.
    Idempotent: only a pending payment is charged, always with the same idempotency key,
    so a retried task or a second sweep gets the provider's first answer back instead of
    a second charge. Raises ProviderTransientError when worth retrying later.
    """
    payment = Payment.objects.select_related("customer", "merchant").filter(pk=payment_id).first()
    if payment is None or payment.status != PaymentStatus.PENDING or not payment.off_session:
        return payment
    charge = SavedMethodCharge(
        payment_id=payment.pk,
        amount=payment.amount,
        currency=payment.currency,
        payment_method_id=payment.provider_payment_method_id,
        provider_customer_id=payment.provider_customer_id,
        description=payment.description,
        receipt=_receipt_for(payment),
    )
    remote, failed = _provider_dispatch(
        payment,
        lambda provider: provider.charge_saved_method(
            charge, idempotency_key=f"charge-{payment.pk}"
        ),
        actor="payment_charge_dispatch",
    )
    if failed is not None:
        return failed
    return payment_sync_from_provider(
        provider=payment.provider,
        remote=remote,
        source=PaymentEvent.Source.TASK,
        actor="payment_charge_dispatch",
    )


def _provider_dispatch(payment: Payment, call, *, actor: str):
    """
    Count a dispatch attempt (the sweeps read it) and make the provider call. Returns
    `(answer, None)`, or `(None, failed payment)` when the provider refused for good.
    Transient errors propagate, for the task to retry.
    """
    Payment.objects.filter(pk=payment.pk).update(
        dispatch_attempts=F("dispatch_attempts") + 1, last_dispatched_at=timezone.now()
    )
    try:
        return call(providers.get_provider(payment.provider)), None
    except ProviderTransientError:
        raise
    except ProviderError as exc:
        failed = payment_fail(
            payment_id=payment.pk,
            code=exc.code,
            message=exc.message,
            source=PaymentEvent.Source.TASK,
            actor=actor,
        )
        return None, failed


def _close_orphan_checkout(payment: Payment, result) -> None:
    logger.warning(
        "Payment %s moved on while checkout %s was made; closing it", payment.pk, result.checkout_id
    )
    try:
        providers.get_provider(payment.provider).payment_cancel(
            result.provider_payment_id,
            idempotency_key=f"orphan-{result.checkout_id}",
            checkout_id=result.checkout_id,
        )
    except ProviderError as exc:
        logger.error("Could not close orphan checkout %s: %s", result.checkout_id, exc.message)


def _receipt_for(payment: Payment) -> Receipt | None:
    """The payment's line items (or one line for it all), as the merchant set receipts up."""
    merchant = payment.merchant
    if not merchant.receipts_enabled:
        return None
    lines = payment.line_items or [
        {
            "description": payment.description or f"Payment {payment.pk}",
            "quantity": 1,
            "unit_amount": str(payment.amount),
        }
    ]
    items = tuple(
        ReceiptItem(
            description=line["description"][:128],
            quantity=Decimal(line["quantity"]),
            amount=Decimal(line["unit_amount"]),
            vat_code=merchant.receipt_vat_code,
            payment_subject=merchant.receipt_payment_subject,
            payment_mode=merchant.receipt_payment_mode,
        )
        for line in lines
    )
    email = payment.customer.email if payment.customer else ""
    return Receipt(
        items=items, customer_email=email, tax_system_code=merchant.receipt_tax_system_code
    )


def payment_fail(
    *, payment_id: str, code: str, message: str, source: str, actor: str = ""
) -> Payment:
    with transaction.atomic():
        payment = payment_lock(payment_id)
        if not payment_can_transition(payment.status, PaymentStatus.FAILED):
            return payment
        return payment_transition(
            payment=payment,
            to_status=PaymentStatus.FAILED,
            source=source,
            actor=actor,
            data={"failure_code": code},
            failure_code=code[:100],
            failure_message=message[:1000],
        )


def payment_sync_from_provider(
    *, provider: str, remote: ProviderPayment, source: str, actor: str = ""
) -> Payment | None:
    """
    Bring our payment in line with the provider's account of it (a webhook, a sync).

    Acts on the state the provider reports, not on the order messages arrive in: a move
    the state machine allows is made; anything else (an older message arriving late, a
    duplicate) changes nothing. Returns None when the payment is not ours.
    """
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(pk=remote.reference).first()
        if payment is None or payment.provider != provider:
            return None
        mismatch = _provider_mismatch(payment, remote)
        if mismatch:
            # Another object's money must never move this payment. Raising keeps the
            # inbox row failed, with this message, for a human to look at.
            raise ProviderMismatch(f"Payment {payment.pk}: the provider reports {mismatch}.")
        _payment_absorb_details(payment, remote)
        target = remote.status
        if target in MONEY_TAKEN_STATUSES and payment.status in MONEY_RETURNED_STATUSES:
            # The provider holds the buyer's money for a payment we told the merchant is
            # off. Ignoring it would keep money nobody will ship goods for: fail loudly
            # so the inbox row stays failed and reconciliation picks it up.
            logger.error(
                "Provider reports %s for %s payment %s", target, payment.status, payment.pk
            )
            raise ProviderMismatch(
                f"Payment {payment.pk} is {payment.status} here, but the provider reports "
                f"{target}: the buyer's money must be released or refunded."
            )
        if target == payment.status or not payment_can_transition(payment.status, target):
            if target != payment.status:
                payment_event_record(
                    payment=payment,
                    type="provider_update_ignored",
                    source=source,
                    actor=actor,
                    data={"provider_status": target, "status": payment.status},
                )
            return payment
        changes = {}
        if target == PaymentStatus.SUCCEEDED:
            changes["amount_captured"] = remote.amount_captured or payment.amount
        if target == PaymentStatus.FAILED:
            changes["failure_code"] = remote.failure_code[:100] or "provider_declined"
            changes["failure_message"] = remote.failure_message[:1000]
        return payment_transition(
            payment=payment, to_status=target, source=source, actor=actor, **changes
        )


MONEY_TAKEN_STATUSES = {PaymentStatus.SUCCEEDED, PaymentStatus.REQUIRES_CAPTURE}
MONEY_RETURNED_STATUSES = {PaymentStatus.FAILED, PaymentStatus.CANCELED}


class ProviderMismatch(Exception):
    """The provider's record names our payment but disagrees on what it is."""


def _provider_mismatch(payment: Payment, remote: ProviderPayment) -> str:
    if payment.provider_payment_id and remote.provider_payment_id != payment.provider_payment_id:
        return (
            f"provider payment id {remote.provider_payment_id}, not {payment.provider_payment_id}"
        )
    if remote.currency.upper() != payment.currency:
        return f"currency {remote.currency}, not {payment.currency}"
    if remote.amount != payment.amount:
        return f"amount {remote.amount}, not {payment.amount}"
    return ""


def payment_refresh_from_provider(*, payment: Payment, actor: str = "") -> Payment:
    """
    Ask the provider for the payment as it is now and apply that like a webhook would
    (operators' `sync_payment`). Raises when there is nothing to ask or it cannot answer.
    """
    if payment.provider == providers.CREDITS:
        raise InvalidState("Credits payments are settled here; there is no provider to ask.")
    if not payment.provider_payment_id:
        raise InvalidState(
            "The provider has no payment for it yet (no checkout was paid or opened)."
        )
    remote = _provider_call(lambda p: p.payment_retrieve(payment.provider_payment_id), payment)
    return payment_sync_from_provider(
        provider=payment.provider, remote=remote, source=PaymentEvent.Source.ADMIN, actor=actor
    )


def _payment_absorb_details(payment: Payment, remote: ProviderPayment) -> None:
    """Copy the provider's ids and card details that we do not have yet."""
    fields = []
    for ours, theirs in [
        ("provider_payment_id", remote.provider_payment_id),
        ("provider_payment_method_id", remote.payment_method_id),
        ("provider_customer_id", remote.provider_customer_id),
        ("card_brand", remote.card_brand),
        ("card_last4", remote.card_last4),
    ]:
        if theirs and getattr(payment, ours) != theirs:
            setattr(payment, ours, theirs)
            fields.append(ours)
    if remote.payment_method_types and payment.payment_method_types != list(
        remote.payment_method_types
    ):
        payment.payment_method_types = list(remote.payment_method_types)
        fields.append("payment_method_types")
    if fields:
        payment.save(update_fields=[*fields, "updated_at"])


def payment_cancel(*, payment: Payment, source: str, actor: str = "") -> Payment:
    """
    Cancel a payment that has not taken money: pending, or authorized and not captured.
    The provider is told first; its refusal leaves our payment as it was.
    """
    with transaction.atomic():
        payment = payment_lock(payment.pk)
        if not payment_can_transition(payment.status, PaymentStatus.CANCELED):
            raise InvalidState(f"The payment is {payment.status}; it cannot be canceled.")
        if payment.provider_payment_id or payment.provider_checkout_id:
            # Tell the provider first: an open checkout left behind could still be paid.
            _provider_call(
                lambda p: p.payment_cancel(
                    payment.provider_payment_id,
                    idempotency_key=f"cancel-{payment.pk}",
                    checkout_id=payment.provider_checkout_id,
                ),
                payment,
            )
        return payment_transition(
            payment=payment, to_status=PaymentStatus.CANCELED, source=source, actor=actor
        )


def payment_capture(
    *, payment: Payment, amount: Decimal | str | None = None, source: str, actor: str = ""
) -> Payment:
    """
    Capture an authorized payment, in full or in part (the rest of the hold is
    released). The row stays locked during the provider call, so two captures cannot
    both go through; the provider call is bounded by its timeout.
    """
    with transaction.atomic():
        payment = payment_lock(payment.pk)
        if payment.status != PaymentStatus.REQUIRES_CAPTURE:
            raise InvalidState(
                f"The payment is {payment.status}; only an authorized payment can be captured."
            )
        amount = payment.amount if amount is None else money.amount_coerce(amount, payment.currency)
        if amount > payment.amount:
            authorized = money.amount_format(payment.amount, payment.currency)
            raise ValidationFailed(
                f"Cannot capture more than the authorized {authorized}.", param="amount"
            )
        # A retry after a lost answer must carry the same key, and a capture of another
        # amount must not be mistaken for it.
        minor = money.to_minor_units(amount, payment.currency)
        remote = _provider_call(
            lambda p: p.payment_capture(
                payment.provider_payment_id, amount, idempotency_key=f"capture-{payment.pk}-{minor}"
            ),
            payment,
        )
        return payment_transition(
            payment=payment,
            to_status=PaymentStatus.SUCCEEDED,
            source=source,
            actor=actor,
            data={"amount_captured": money.amount_format(amount, payment.currency)},
            amount_captured=remote.amount_captured or amount,
        )


def _provider_call(call, payment: Payment):
    try:
        return call(providers.get_provider(payment.provider))
    except ProviderDeclined as exc:
        raise InvalidState(f"The provider refused: {exc.message}") from exc
    except ProviderError as exc:
        raise ProviderUnavailable(f"The provider could not be reached: {exc.message}") from exc


# --- Refunds ------------------------------------------------------------------------------

REFUNDABLE_STATUSES = {PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED}


def payment_refundable(payment: Payment) -> Decimal:
    """What is left to refund: captured, less every refund pending or done."""
    held = Refund.objects.filter(payment=payment, status__in=REFUND_HOLDING_STATUSES).aggregate(
        total=Sum("amount")
    )["total"] or Decimal(0)
    return payment.amount_captured - held


def refund_create(
    *,
    payment: Payment,
    amount: Decimal | str | None = None,
    reason: str = "",
    source: str,
    actor: str = "",
) -> Refund:
    """
    Start a refund of `amount` (default: everything left to refund). Under the payment's
    row lock, so concurrent refunds can never add up to more than was captured. The
    provider is asked in a task once this commits; its answer or webhook settles it.
    """
    with transaction.atomic():
        payment = payment_lock(payment.pk)
        if payment.status not in REFUNDABLE_STATUSES:
            raise InvalidState(
                f"The payment is {payment.status}; only a succeeded payment can be refunded."
            )
        refundable = payment_refundable(payment)
        amount = refundable if amount is None else money.amount_coerce(amount, payment.currency)
        if refundable <= 0:
            raise InvalidState("Nothing is left to refund on this payment.")
        if amount > refundable:
            left = money.amount_format(refundable, payment.currency)
            raise ValidationFailed(
                f"The refund exceeds what is left to refund ({left} {payment.currency}).",
                code=ErrorCode.REFUND_EXCEEDS_REFUNDABLE,
                param="amount",
            )
        refund = Refund.objects.create(
            payment=payment,
            merchant_id=payment.merchant_id,
            livemode=payment.livemode,
            amount=amount,
            currency=payment.currency,
            reason=reason,
            provider=payment.provider,
            source=source,
            actor=actor,
        )
        payment_event_record(
            payment=payment,
            type="refund_requested",
            source=source,
            actor=actor,
            data={"refund": refund.pk, "amount": money.amount_format(amount, payment.currency)},
        )
        if payment.provider == providers.CREDITS:
            # Our own books: the credit goes back at once, in this transaction.
            _credit_move(
                customer=payment.customer,
                kind=CreditTransaction.Type.REFUND,
                amount=amount,
                currency=payment.currency,
                description=reason,
                payment=payment,
                refund=refund,
                livemode=payment.livemode,
                source=source,
                actor=actor,
            )
            return _refund_apply(refund.pk, RefundStatus.SUCCEEDED, source=source, actor=actor)
        from payments.tasks import refund_dispatch
        from payments_project.celery import enqueue_on_commit

        enqueue_on_commit(refund_dispatch, refund.pk)
    return refund


def refund_dispatch_start(*, refund_id: str) -> Refund | None:
    """
    Ask the provider for the refund (same idempotency key on every try) and apply its
    answer. Raises ProviderTransientError when worth retrying later.
    """
    refund = Refund.objects.select_related("payment").filter(pk=refund_id).first()
    if refund is None or refund.status != RefundStatus.PENDING or refund.provider_refund_id:
        return refund
    Refund.objects.filter(pk=refund.pk).update(
        dispatch_attempts=F("dispatch_attempts") + 1, last_dispatched_at=timezone.now()
    )
    try:
        remote = providers.get_provider(refund.provider).refund_create(
            refund.payment.provider_payment_id,
            refund.amount,
            refund.currency,
            idempotency_key=f"refund-{refund.pk}",
            reason=refund.reason,
            reference=refund.pk,
        )
    except ProviderTransientError:
        raise
    except ProviderError as exc:
        return _refund_apply(
            refund.pk, "failed", source=PaymentEvent.Source.TASK, failure_reason=exc.message
        )
    return _refund_apply(
        refund.pk,
        remote.status,
        source=PaymentEvent.Source.TASK,
        provider_refund_id=remote.provider_refund_id,
        failure_reason=remote.failure_reason,
        remote=remote,
    )


def refund_sync_from_provider(
    *, provider: str, remote: ProviderRefund, source: str, actor: str = ""
) -> Refund | None:
    """A provider's account of a refund (webhook): None when it is not one of ours."""
    refund = None
    if remote.reference:
        refund = Refund.objects.filter(pk=remote.reference, provider=provider).first()
    if refund is None and remote.provider_refund_id:
        refund = Refund.objects.filter(
            provider=provider, provider_refund_id=remote.provider_refund_id
        ).first()
    if refund is None:
        return None
    return _refund_apply(
        refund.pk,
        remote.status,
        source=source,
        actor=actor,
        provider_refund_id=remote.provider_refund_id,
        failure_reason=remote.failure_reason,
        remote=remote,
    )


def _refund_apply(
    refund_id: str,
    status: str,
    *,
    source: str,
    actor: str = "",
    provider_refund_id: str = "",
    failure_reason: str = "",
    remote: ProviderRefund | None = None,
) -> Refund:
    """Settle a refund once: the payment and its refund change together, or not at all."""
    with transaction.atomic():
        # Payment first, then refund: every path locks in this order.
        payment = payment_lock(
            Refund.objects.values_list("payment_id", flat=True).get(pk=refund_id)
        )
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if provider_refund_id and not refund.provider_refund_id:
            refund.provider_refund_id = provider_refund_id
            refund.save(update_fields=["provider_refund_id", "updated_at"])
        reversed_ = (
            refund.status == RefundStatus.SUCCEEDED and status in ("failed", "canceled")
        ) or (
            refund.status in (RefundStatus.FAILED, RefundStatus.CANCELED) and status == "succeeded"
        )
        if reversed_:
            # The provider changed its mind after we settled (Stripe allows a succeeded refund
            # to fail later; a "failed" answer may hide a request that went through). Our
            # books cannot quietly go back: fail loudly, so the inbox row stays failed for
            # staff to settle with the buyer and reconcile (and no second refund is hidden).
            raise ProviderMismatch(
                f"Refund {refund.pk} is {refund.status} here, but the provider now reports it "
                f"{status}: what the buyer received no longer matches our books."
            )
        if refund.status != RefundStatus.PENDING or status == RefundStatus.PENDING:
            return refund  # already settled (a duplicate or late message), or not yet
        if remote is not None and _refund_mismatch(refund, payment, remote):
            raise ProviderMismatch(
                f"Refund {refund.pk}: the provider reports {remote.amount} {remote.currency}."
            )
        refund.completed_at = timezone.now()
        if status == RefundStatus.SUCCEEDED:
            refund.status = RefundStatus.SUCCEEDED
            refund.save(update_fields=["status", "completed_at", "updated_at"])
            refunded = payment.amount_refunded + refund.amount
            payment_transition(
                payment=payment,
                to_status=(
                    PaymentStatus.REFUNDED
                    if refunded >= payment.amount_captured
                    else PaymentStatus.PARTIALLY_REFUNDED
                ),
                source=source,
                actor=actor,
                data={
                    "refund": refund.pk,
                    "amount": money.amount_format(refund.amount, refund.currency),
                },
                amount_refunded=refunded,
            )
            outcome_announce(refund, "refund.succeeded")
        else:
            # Failed or canceled: its amount is refundable again.
            refund.status = RefundStatus.CANCELED if status == "canceled" else RefundStatus.FAILED
            refund.failure_reason = failure_reason[:500]
            refund.save(update_fields=["status", "failure_reason", "completed_at", "updated_at"])
            payment_event_record(
                payment=payment,
                type="refund_failed",
                source=source,
                actor=actor,
                data={"refund": refund.pk, "reason": refund.failure_reason},
            )
            outcome_announce(refund, "refund.failed")
        return refund


def _refund_mismatch(refund: Refund, payment: Payment, remote: ProviderRefund) -> bool:
    """A report that names our refund must describe it: same money, same payment."""
    other_payment = (
        remote.provider_payment_id
        and payment.provider_payment_id
        and remote.provider_payment_id != payment.provider_payment_id
    )
    return bool(
        other_payment
        or remote.amount != refund.amount
        or remote.currency.upper() != refund.currency
    )


# --- Credit balances ------------------------------------------------------------------------


def _balance_locked(customer: Customer, currency: str, livemode: bool) -> CustomerBalance:
    where = {"customer": customer, "currency": currency, "livemode": livemode}
    CustomerBalance.objects.get_or_create(**where)
    return CustomerBalance.objects.select_for_update().get(**where)


def _credit_move(
    *,
    customer: Customer,
    kind: str,
    amount: Decimal,
    currency: str,
    description: str = "",
    payment: Payment | None = None,
    refund: Refund | None = None,
    livemode: bool,
    source: str,
    actor: str = "",
) -> CreditTransaction:
    """Change a balance under its row lock; a debit beyond it changes nothing."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("credit moves run inside the transaction of their cause")
    balance = _balance_locked(customer, currency, livemode)
    debit = kind in (CreditTransaction.Type.DEDUCT, CreditTransaction.Type.SPEND)
    if debit and balance.amount < amount:
        have = money.amount_format(balance.amount, currency)
        raise ValidationFailed(
            f"The customer's credit balance ({have} {currency}) is not enough.",
            code=ErrorCode.INSUFFICIENT_BALANCE,
            param="amount",
        )
    balance.amount = balance.amount - amount if debit else balance.amount + amount
    balance.save(update_fields=["amount", "updated_at"])
    return CreditTransaction.objects.create(
        customer=customer,
        livemode=livemode,
        type=kind,
        amount=amount,
        currency=currency,
        description=description,
        payment=payment,
        refund=refund,
        balance_after=balance.amount,
        source=source,
        actor=actor,
    )


@transaction.atomic
def customer_credit_change(
    *,
    customer: Customer,
    kind: str,
    amount: Decimal | str,
    currency: str,
    description: str = "",
    source: str,
    actor: str = "",
    livemode: bool = False,
) -> CreditTransaction:
    """Grant credit to a customer, or deduct it (never below zero)."""
    if kind not in (CreditTransaction.Type.GRANT, CreditTransaction.Type.DEDUCT):
        raise ValidationFailed("type must be 'grant' or 'deduct'.", param="type")
    currency = money.currency_normalize(currency)
    amount = money.amount_coerce(amount, currency)
    credit = _credit_move(
        customer=customer,
        kind=kind,
        amount=amount,
        currency=currency,
        description=description,
        livemode=livemode,
        source=source,
        actor=actor,
    )
    credit_announce(credit, f"credit.{'granted' if kind == 'grant' else 'deducted'}")
    return credit


def customer_balances(customer: Customer, livemode: bool) -> dict[str, str]:
    return {
        balance.currency: money.amount_format(balance.amount, balance.currency)
        for balance in sorted(customer.balances.all(), key=lambda b: b.currency)  # prefetched
        if balance.livemode == livemode
    }


def _payment_pay_with_credits(payment: Payment, *, actor: str) -> Payment:
    """Debit the balance and succeed the payment, in the caller's transaction."""
    _credit_move(
        customer=payment.customer,
        kind=CreditTransaction.Type.SPEND,
        amount=payment.amount,
        currency=payment.currency,
        description=payment.description,
        payment=payment,
        livemode=payment.livemode,
        source=PaymentEvent.Source.API,
        actor=actor,
    )
    return payment_transition(
        payment=payment_lock(payment.pk),
        to_status=PaymentStatus.SUCCEEDED,
        source=PaymentEvent.Source.API,
        actor=actor,
        data={"paid_with": "credits"},
        amount_captured=payment.amount,
        payment_method_types=["credits"],
    )


def credit_announce(credit: CreditTransaction, event_type: str) -> None:
    outcomes.announce(
        outcomes.Outcome(
            type=event_type,
            merchant_id=credit.customer.merchant_id,
            livemode=credit.livemode,
            object_id=credit.pk,
            data=credit_object(credit),
        )
    )


def credit_object(credit: CreditTransaction) -> dict:
    return {
        "id": credit.pk,
        "object": "credit_transaction",
        "customer": credit.customer_id,
        "type": credit.type,
        "amount": money.amount_format(credit.amount, credit.currency),
        "currency": credit.currency,
        "description": credit.description or None,
        "payment": credit.payment_id,
        "refund": credit.refund_id,
        "balance_after": money.amount_format(credit.balance_after, credit.currency),
        "created_at": credit.created_at.isoformat().replace("+00:00", "Z"),
    }


# --- Reconciliation corrections ---------------------------------------------------------------

# The failure code of a payment reconciliation found unknown to its provider.
RECONCILED_MISSING_AT_PROVIDER = "reconciled_missing_at_provider"


def payment_correct_from_provider(
    *,
    payment: Payment,
    remote: ProviderPayment | None,
    actor: str,
    reason: str,
    source: str = PaymentEvent.Source.ADMIN,
) -> Payment:
    """
    Make a payment what its provider says it is, where the state machine has no move for
    it: staff taking the provider's state for a reconciliation mismatch. The provider's
    records are the truth about money taken, so this may end a succeeded payment, revive a
    failed one whose money the provider holds, or change what was captured.

    `remote` None means the provider has no record of the payment at all: no money was
    taken, so it becomes `failed` (code `reconciled_missing_at_provider`), never paid.

    Under the row lock, in one transaction: the fields change, the timeline gets a
    `reconciled` step with before and after and the staff actor, and `payment.reconciled`
    is announced so the ledger books the difference in money (merchants get no callback
    for it). Besides `payment_transition`, this is the only place `Payment.status` is
    assigned; anything the normal machine allows should go through
    `payment_sync_from_provider` instead. Refused (InvalidState) when the provider's
    record cannot be our payment's (another currency or provider id), is inconsistent in
    itself, or would undo refunds we made: those are settled by hand. Taking the same
    state twice changes nothing the second time.
    """
    with transaction.atomic():
        payment = payment_lock(payment.pk)
        target = _correction_target(payment, remote)
        before = _correction_snapshot(payment)
        changes = {name: value for name, value in target.items() if getattr(payment, name) != value}
        if not changes:
            return payment
        from_status = payment.status
        for name, value in changes.items():
            setattr(payment, name, value)
        fields = {*changes, "updated_at"}
        if payment.status in COMPLETING_STATUSES and payment.completed_at is None:
            payment.completed_at = timezone.now()
            fields.add("completed_at")
        payment.save(update_fields=sorted(fields))
        event = payment_event_record(
            payment=payment,
            type="reconciled",
            source=source,
            actor=actor,
            from_status=from_status,
            to_status=payment.status,
            data={
                "reason": reason[:500],
                "before": before,
                "after": _correction_snapshot(payment),
                "provider_record": "missing" if remote is None else remote.provider_payment_id,
            },
        )
        from payments.serializers import PaymentOutputSerializer

        # One booking per correction: the timeline step's id names the outcome.
        outcomes.announce(
            outcomes.Outcome(
                type="payment.reconciled",
                merchant_id=payment.merchant_id,
                livemode=payment.livemode,
                object_id=event.pk,
                data=json.loads(json.dumps(PaymentOutputSerializer(payment).data)),
            )
        )
        return payment


def _correction_target(payment: Payment, remote: ProviderPayment | None) -> dict:
    """The fields a correction sets, or InvalidState when it must be settled by hand."""
    if remote is None:
        if payment.amount_refunded:
            raise InvalidState(
                f"Payment {payment.pk} has refunds here, but the provider has no record of "
                "it: settle it by hand."
            )
        return {
            "status": PaymentStatus.FAILED,
            "amount_captured": Decimal(0),
            "failure_code": RECONCILED_MISSING_AT_PROVIDER,
            "failure_message": "The provider has no record of this payment: no money was taken.",
        }
    if remote.currency.upper() != payment.currency:
        raise InvalidState(
            f"The provider's record is in {remote.currency}, the payment in {payment.currency}: "
            "a currency is never corrected automatically; settle it by hand."
        )
    if (
        payment.provider_payment_id
        and remote.provider_payment_id
        and remote.provider_payment_id != payment.provider_payment_id
    ):
        raise InvalidState(
            f"The provider's record {remote.provider_payment_id} is not this payment's "
            f"({payment.provider_payment_id})."
        )
    taken = remote.status == PaymentStatus.SUCCEEDED
    captured = (remote.amount_captured or remote.amount) if taken else Decimal(0)
    if remote.amount <= 0 or captured > remote.amount:
        raise InvalidState(
            f"The provider's record is inconsistent (captured {captured} of {remote.amount}): "
            "settle it by hand."
        )
    if payment.amount_refunded > captured:
        raise InvalidState(
            f"Payment {payment.pk} has {payment.amount_refunded} refunded here, more than the "
            f"{captured} the provider reports captured: settle it by hand."
        )
    status = remote.status
    if taken and payment.amount_refunded:
        status = (
            PaymentStatus.REFUNDED
            if payment.amount_refunded >= captured
            else PaymentStatus.PARTIALLY_REFUNDED
        )
    target = {"status": status, "amount": remote.amount, "amount_captured": captured}
    if remote.provider_payment_id:
        target["provider_payment_id"] = remote.provider_payment_id
    if status == PaymentStatus.FAILED:
        target["failure_code"] = remote.failure_code[:100] or "provider_declined"
        target["failure_message"] = remote.failure_message[:1000]
    return target


def _correction_snapshot(payment: Payment) -> dict:
    return {
        "status": payment.status,
        "amount": money.amount_format(payment.amount, payment.currency),
        "amount_captured": money.amount_format(payment.amount_captured, payment.currency),
        "amount_refunded": money.amount_format(payment.amount_refunded, payment.currency),
        "currency": payment.currency,
    }
