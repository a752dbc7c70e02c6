"""
Write operations of subscriptions: plans, subscribing, renewals, dunning, cancellation.

How a subscription moves:
- `subscription_create` opens it `incomplete` with a draft invoice and a first payment
  (saving the card), or `trialing` with no payment when the plan has a trial.
- Payment outcomes arrive through the outcomes hook (`subscription_on_outcome`), in the
  transaction of the payment's change: a paid first invoice activates, a paid renewal
  advances the period, a failed one starts or continues dunning, a full refund cancels.
- The renewal job (`subscriptions_run_due`, beat) acts on `next_action_at`: it opens the
  next period's invoice and charges the saved card shortly before the period ends,
  retries on the dunning schedule, ends subscriptions canceled at period end, and
  expires first payments nobody made.

Locks: a payment's row before its subscription's, on every path (the payment services
announce outcomes while holding the payment's lock).

Never charged twice for one period: one renewal invoice per period (a unique
constraint); a new attempt only when the invoice has no payment in flight; the job
claims a subscription with SKIP LOCKED and clears `next_action_at` in the transaction
that creates the attempt; the charge itself carries the payment's idempotency key.
"""

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import services as billing
from billing.models import BillingReason, Invoice, InvoiceStatus
from payments import money, outcomes, providers
from payments import services as payments
from payments.errors import (
    Conflict,
    ErrorCode,
    InvalidState,
    PaymentError,
    ValidationFailed,
)
from payments.models import Customer, Merchant, Payment, PaymentEvent, PaymentStatus, Refund
from subscriptions.models import (
    ENDED_STATUSES,
    RUNNING_STATUSES,
    Interval,
    Plan,
    Subscription,
    SubscriptionStatus,
)

logger = logging.getLogger(__name__)

ACTOR = "subscriptions"
PENDING_PAYMENT_STATUSES = {PaymentStatus.PENDING, PaymentStatus.REQUIRES_CAPTURE}
# Declines of an off-session charge that only the customer, present, can get past.
NEEDS_CUSTOMER_CODES = {"authentication_required"}


# --- Plans ------------------------------------------------------------------------------------


def plan_create(
    *,
    merchant: Merchant,
    code: str,
    name: str,
    amount: Decimal | str,
    currency: str,
    interval: str = Interval.MONTH,
    interval_count: int = 1,
    trial_days: int = 0,
    description: str = "",
    active: bool = True,
) -> Plan:
    currency = money.currency_normalize(currency)
    amount = money.amount_coerce(amount, currency)
    if interval not in Interval.values:
        raise ValidationFailed(
            f"interval must be one of: {', '.join(Interval.values)}.", param="interval"
        )
    if Plan.objects.filter(merchant=merchant, code=code).exists():
        raise Conflict(f"A plan with code '{code}' already exists.", param="code")
    plan = Plan(
        merchant=merchant,
        code=code,
        name=name,
        description=description,
        amount=amount,
        currency=currency,
        interval=interval,
        interval_count=interval_count,
        trial_days=trial_days,
        active=active,
    )
    plan.full_clean()
    plan.save()
    return plan


def plan_period_end(plan: Plan, anchor: datetime, index: int) -> datetime:
    """When period `index` (0-based) ends: anchor + (index + 1) intervals, from the anchor."""
    steps = plan.interval_count * (index + 1)
    if plan.interval == Interval.DAY:
        return anchor + timedelta(days=steps)
    if plan.interval == Interval.WEEK:
        return anchor + timedelta(weeks=steps)
    if plan.interval == Interval.MONTH:
        return anchor + relativedelta(months=steps)
    return anchor + relativedelta(years=steps)


# --- Subscribing ------------------------------------------------------------------------------


def _lead() -> timedelta:
    return timedelta(minutes=settings.SUBSCRIPTION_RENEWAL_LEAD_MINUTES)


def _renewal_due_at(subscription: Subscription) -> datetime:
    """Charge a little before the period ends, so a paid customer never sees a gap."""
    if subscription.cancel_at_period_end:
        return subscription.current_period_end
    return subscription.current_period_end - _lead()


@transaction.atomic
def subscription_create(
    *,
    merchant: Merchant,
    livemode: bool,
    customer: Customer,
    plan: Plan,
    provider: str | None = None,
    return_url: str = "",
    metadata: dict | None = None,
    actor: str = "",
) -> Subscription:
    """
    Subscribe `customer` to `plan`. Without a trial: `incomplete`, with a draft first
    invoice and a payment whose checkout saves the card for renewals; it activates when
    that payment succeeds. With a trial: `trialing` at once, nothing charged until the
    trial ends.
    """
    if plan.merchant_id != merchant.pk or customer.merchant_id != merchant.pk:
        raise ValidationFailed("No such plan or customer.", param="plan")
    if not plan.active:
        raise ValidationFailed(f"Plan '{plan.code}' is not on sale.", param="plan")
    provider = provider or merchant.default_provider
    if provider == providers.CREDITS:
        raise ValidationFailed(
            "Subscriptions renew by charging a saved card: use a card provider.",
            param="provider",
        )
    payments.provider_check(provider, livemode)
    if Subscription.objects.filter(
        customer=customer, plan=plan, livemode=livemode, status__in=RUNNING_STATUSES
    ).exists():
        raise Conflict(
            f"The customer already has a running subscription to '{plan.code}'.",
            code=ErrorCode.SUBSCRIPTION_EXISTS,
            param="plan",
        )
    now = timezone.now()
    subscription = Subscription.objects.create(
        merchant=merchant,
        livemode=livemode,
        customer=customer,
        plan=plan,
        provider=provider,
        return_url=return_url,
        metadata=metadata or {},
    )
    if plan.trial_days:
        trial_end = now + timedelta(days=plan.trial_days)
        subscription.status = SubscriptionStatus.TRIALING
        subscription.trial_start = subscription.current_period_start = now
        subscription.trial_end = subscription.current_period_end = trial_end
        subscription.cycle_anchor = trial_end
        subscription.period_index = -1
        subscription.next_action_at = _renewal_due_at(subscription)
        subscription.save()
        return subscription
    subscription.cycle_anchor = now
    period_end = plan_period_end(plan, now, 0)
    invoice = billing.invoice_create(
        merchant=merchant,
        livemode=livemode,
        customer=customer,
        currency=plan.currency,
        lines=[_plan_line(plan, now, period_end)],
        billing_reason=BillingReason.SUBSCRIPTION_CREATE,
        subscription_id=subscription.pk,
        period_start=now,
        period_end=period_end,
        description=f"Subscription to {plan.name}",
    )
    subscription.latest_invoice = _attempt_payment(subscription, invoice, actor=actor)
    subscription.next_action_at = now + timedelta(
        hours=settings.SUBSCRIPTION_INCOMPLETE_EXPIRY_HOURS
    )
    subscription.save()
    return subscription


def _plan_line(plan: Plan, start: datetime, end: datetime) -> billing.Line:
    # The period is on the line itself (invoices print it beside the description).
    return billing.Line(
        description=f"{plan.name} subscription",
        unit_amount=plan.amount,
        plan_id=plan.pk,
        period_start=start,
        period_end=end,
    )


def _attempt_payment(
    subscription: Subscription, invoice: Invoice, *, actor: str, on_session: bool = False
) -> Invoice:
    """
    A payment for the invoice: an off-session charge of the saved card when there is
    one (and the customer is not needed), otherwise a pay link (`checkout_url`) whose
    checkout saves the card. Returns the invoice with the payment attached.
    """
    saved = (
        payments.SavedMethod(subscription.payment_method_id, subscription.provider_customer_id)
        if subscription.payment_method_id and not on_session
        else None
    )
    line = invoice.lines.first()
    # Payments and fiscal receipts have no period of their own: it goes in the text.
    item = f"{line.description}, {line.period_start:%Y-%m-%d} – {line.period_end:%Y-%m-%d}"
    payment = payments.payment_create(
        merchant=subscription.merchant,
        livemode=subscription.livemode,
        amount=invoice.total,
        currency=invoice.currency,
        provider=subscription.provider,
        customer=subscription.customer,
        description=invoice.description,
        metadata={"subscription": subscription.pk, "invoice": invoice.pk},
        line_items=[{"description": item, "quantity": 1, "unit_amount": invoice.total}],
        return_url=subscription.return_url,
        save_payment_method=saved is None,
        saved_method=saved,
        actor=actor or ACTOR,
    )
    return billing.invoice_attach_payment(invoice=invoice, payment=payment)


# --- Cancellation -----------------------------------------------------------------------------


def subscription_cancel(
    *, subscription: Subscription, at_period_end: bool = False, actor: str = ""
) -> Subscription:
    """
    Cancel now (an unpaid invoice is voided and its open payment closed), or at the end
    of the period already paid for (`at_period_end`; nothing more is charged).
    """
    with transaction.atomic():
        subscription = _lock_with_payment(subscription.pk)
        if subscription.status in ENDED_STATUSES:
            raise InvalidState(
                f"The subscription is {subscription.status}.",
                code=ErrorCode.SUBSCRIPTION_INVALID_STATE,
            )
        if not at_period_end:
            return _subscription_end(
                subscription, SubscriptionStatus.CANCELED, "requested", actor=actor
            )
        if subscription.status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING):
            raise InvalidState(
                f"The subscription is {subscription.status}: it has no paid period to run "
                "out. Cancel it now instead.",
                code=ErrorCode.SUBSCRIPTION_INVALID_STATE,
                param="at_period_end",
            )
        if not subscription.cancel_at_period_end:
            subscription.cancel_at_period_end = True
            subscription.canceled_at = timezone.now()
            subscription.cancellation_reason = "requested"
            subscription.next_action_at = _renewal_due_at(subscription)
            subscription.save(
                update_fields=[
                    "cancel_at_period_end",
                    "canceled_at",
                    "cancellation_reason",
                    "next_action_at",
                    "updated_at",
                ]
            )
        return subscription


def _lock_with_payment(subscription_id: str, *, skip_locked: bool = False) -> Subscription | None:
    """
    The subscription row locked, after the row of its latest invoice's payment (the lock
    order every path keeps). With `skip_locked`, None when another worker holds it.
    """
    payment_id = (
        Subscription.objects.filter(pk=subscription_id)
        .values_list("latest_invoice__payment_id", flat=True)
        .first()
    )
    if payment_id:
        payments.payment_lock(payment_id)
    return _locked(subscription_id, skip_locked=skip_locked)


def _locked(subscription_id: str, *, skip_locked: bool = False) -> Subscription | None:
    """The subscription's row locked (only its own row), with what its services read."""
    return (
        Subscription.objects.select_for_update(skip_locked=skip_locked, of=("self",))
        .select_related("plan", "customer", "merchant", "latest_invoice")
        .filter(pk=subscription_id)
        .first()
    )


def _subscription_end(
    subscription: Subscription, status: str, reason: str, *, actor: str = "", at=None
) -> Subscription:
    """
    End a locked subscription: no more charges, its unpaid invoice voided, its open
    payment closed at the provider (a refusal there rolls it all back).
    """
    now = timezone.now()
    subscription.status = status
    subscription.ended_at = at or now
    subscription.canceled_at = subscription.canceled_at or now
    subscription.cancellation_reason = subscription.cancellation_reason or reason
    subscription.next_action_at = None
    subscription.save()
    invoice = subscription.latest_invoice
    if invoice is not None and invoice.status in (InvoiceStatus.DRAFT, InvoiceStatus.OPEN):
        payment = invoice.payment
        if payment is not None:
            payment.refresh_from_db()
        if payment is not None and payment.status in PENDING_PAYMENT_STATUSES:
            # Ended first (above), so this payment's own cancel outcome finds it ended.
            payments.payment_cancel(
                payment=payment, source=PaymentEvent.Source.TASK, actor=actor or ACTOR
            )
        billing.invoice_void(invoice=invoice)
    subscription_announce(subscription, f"subscription.{status}")
    return subscription


# --- The renewal job --------------------------------------------------------------------------


def subscriptions_due(now: datetime | None = None, limit: int = 500) -> list[str]:
    now = now or timezone.now()
    return list(
        Subscription.objects.filter(next_action_at__lte=now)
        .order_by("next_action_at")
        .values_list("pk", flat=True)[:limit]
    )


def subscription_advance(subscription_id: str) -> Subscription | None:
    """
    Do what is due for one subscription: expire an unpaid first invoice, end at period
    end, or open the renewal and charge it (again, on the dunning schedule). None when
    nothing is due or another worker has it.
    """
    with transaction.atomic():
        subscription = _lock_with_payment(subscription_id, skip_locked=True)
        now = timezone.now()
        if (
            subscription is None
            or subscription.next_action_at is None
            or subscription.next_action_at > now
        ):
            return None
        if subscription.status == SubscriptionStatus.INCOMPLETE:
            return _subscription_end(subscription, SubscriptionStatus.EXPIRED, "not_paid")
        if subscription.status not in RUNNING_STATUSES:
            subscription.next_action_at = None
            subscription.save(update_fields=["next_action_at", "updated_at"])
            return subscription
        if subscription.cancel_at_period_end and now >= subscription.current_period_end:
            return _subscription_end(
                subscription,
                SubscriptionStatus.CANCELED,
                "requested",
                at=subscription.current_period_end,
            )
        return _renewal_attempt(subscription, now)


def _renewal_attempt(subscription: Subscription, now: datetime) -> Subscription:
    invoice = _renewal_invoice(subscription)
    if invoice.status == InvoiceStatus.PAID:
        # Paid, but the period did not move (cannot happen through the listener): say so
        # rather than charge again.
        logger.error("Subscription %s: renewal %s is paid already", subscription.pk, invoice.pk)
        subscription.next_action_at = None
        subscription.save(update_fields=["next_action_at", "updated_at"])
        return subscription
    subscription.latest_invoice = invoice
    payment = invoice.payment
    if payment is not None and payment.status in PENDING_PAYMENT_STATUSES:
        # The last attempt is still open (an unpaid pay link, or a charge the provider is
        # still deciding): never a second one beside it; this step counts as unpaid.
        return _renewal_failed(subscription, now)
    # The bank wants the customer to confirm (3-D Secure): charging the card again
    # without them would only fail again, so they get a pay link instead.
    needs_customer = payment is not None and payment.failure_code in NEEDS_CUSTOMER_CODES
    try:
        with transaction.atomic():
            invoice = _attempt_payment(
                subscription, invoice, actor=ACTOR, on_session=needs_customer
            )
    except PaymentError as exc:
        logger.warning("Subscription %s: renewal not attempted: %s", subscription.pk, exc)
        return _renewal_failed(subscription, now)
    subscription.latest_invoice = invoice
    if invoice.payment.off_session:
        subscription.next_action_at = None  # the charge's outcome decides what comes next
        subscription.save(update_fields=["latest_invoice", "next_action_at", "updated_at"])
        return subscription
    # No saved card (a trial ended): the customer has to pay the link; until they do,
    # the subscription is past due, and the dunning schedule gives them until its end.
    return _renewal_failed(subscription, now)


def _renewal_invoice(subscription: Subscription) -> Invoice:
    """The next period's invoice, opened (numbered) once; found again on later tries."""
    plan = subscription.plan
    start = subscription.current_period_end
    existing = Invoice.objects.filter(
        subscription_id=subscription.pk,
        billing_reason=BillingReason.SUBSCRIPTION_CYCLE,
        period_start=start,
    ).first()
    if existing is not None:
        return existing
    end = plan_period_end(plan, subscription.cycle_anchor, subscription.period_index + 1)
    try:
        with transaction.atomic():
            return billing.invoice_create(
                merchant=subscription.merchant,
                livemode=subscription.livemode,
                customer=subscription.customer,
                currency=plan.currency,
                lines=[_plan_line(plan, start, end)],
                billing_reason=BillingReason.SUBSCRIPTION_CYCLE,
                subscription_id=subscription.pk,
                period_start=start,
                period_end=end,
                description=f"Subscription to {plan.name}",
                finalize=True,
            )
    except IntegrityError:
        return Invoice.objects.get(
            subscription_id=subscription.pk,
            billing_reason=BillingReason.SUBSCRIPTION_CYCLE,
            period_start=start,
        )


def _renewal_failed(
    subscription: Subscription, now: datetime, *, retry_now: bool = False
) -> Subscription:
    """
    One more unpaid step: past due (told once), the next try on the dunning schedule
    (retry n at `SUBSCRIPTION_DUNNING_DAYS[n-1]` days after the first failure), or
    canceled once the last retry has failed too.
    """
    schedule = settings.SUBSCRIPTION_DUNNING_DAYS
    subscription.renewal_failures += 1
    if subscription.renewal_failures > len(schedule):
        return _subscription_end(subscription, SubscriptionStatus.CANCELED, "payment_failed")
    became_past_due = subscription.status != SubscriptionStatus.PAST_DUE
    subscription.status = SubscriptionStatus.PAST_DUE
    subscription.past_due_since = subscription.past_due_since or now
    retry = schedule[subscription.renewal_failures - 1]
    subscription.next_action_at = (
        now if retry_now else subscription.past_due_since + timedelta(days=retry)
    )
    subscription.save()
    if became_past_due:
        subscription_announce(subscription, "subscription.past_due")
    return subscription


# --- Payment outcomes -------------------------------------------------------------------------


def subscription_on_outcome(outcome: outcomes.Outcome) -> None:
    """The outcomes listener: payments and refunds of subscription invoices."""
    if outcome.type == "refund.succeeded":
        _on_refund(Refund.objects.get(pk=outcome.object_id))
        return
    if outcome.type not in ("payment.succeeded", "payment.failed", "payment.canceled"):
        return
    invoice = (
        Invoice.objects.filter(payment_id=outcome.object_id)
        .exclude(subscription_id="")
        .order_by("-id")
        .first()
    )
    if invoice is None:
        return
    payment = Payment.objects.get(pk=outcome.object_id)  # locked by the announcing service
    subscription = _locked(invoice.subscription_id)
    if outcome.type == "payment.succeeded":
        _on_paid(subscription, invoice, payment)
    elif subscription.status not in ENDED_STATUSES and subscription.latest_invoice_id == (
        invoice.pk
    ):
        _on_payment_failed(subscription, invoice, payment)


def _on_paid(subscription: Subscription, invoice: Invoice, payment: Payment) -> None:
    is_next_period = (
        invoice.billing_reason == BillingReason.SUBSCRIPTION_CYCLE
        and invoice.period_start == subscription.current_period_end
        and subscription.status in RUNNING_STATUSES
        and not subscription.cancel_at_period_end
    )
    is_first = (
        invoice.billing_reason == BillingReason.SUBSCRIPTION_CREATE
        and subscription.status == SubscriptionStatus.INCOMPLETE
    )
    if not (is_first or is_next_period):
        # Money for a period the subscription will not have (it ended, or is to end at
        # this period's end): give it back rather than keep it for nothing.
        logger.warning(
            "Subscription %s is %s: refunding payment %s",
            subscription.pk,
            subscription.status,
            payment.pk,
        )
        payments.refund_create(
            payment=payment,
            reason=f"Subscription {subscription.pk} is {subscription.status}",
            source=PaymentEvent.Source.TASK,
            actor=ACTOR,
        )
        return
    _absorb_payment_method(subscription, payment)
    subscription.status = SubscriptionStatus.ACTIVE
    subscription.period_index = 0 if is_first else subscription.period_index + 1
    subscription.current_period_start = invoice.period_start
    subscription.current_period_end = invoice.period_end
    subscription.renewal_failures = 0
    subscription.past_due_since = None
    subscription.latest_invoice = invoice
    subscription.next_action_at = _renewal_due_at(subscription)
    subscription.save()
    # Period 0 is the first one paid for, straight away or after a trial.
    subscription_announce(
        subscription,
        "subscription.activated" if subscription.period_index == 0 else "subscription.renewed",
    )


def _absorb_payment_method(subscription: Subscription, payment: Payment) -> None:
    """Keep the card a checkout saved, so the next renewal can charge it off-session."""
    if payment.save_payment_method and payment.provider_payment_method_id:
        subscription.payment_method_id = payment.provider_payment_method_id
        subscription.provider_customer_id = payment.provider_customer_id
        subscription.card_brand = payment.card_brand
        subscription.card_last4 = payment.card_last4


def _on_payment_failed(subscription: Subscription, invoice: Invoice, payment: Payment) -> None:
    if invoice.billing_reason == BillingReason.SUBSCRIPTION_CREATE:
        # The first payment failed: this subscription never starts (subscribe again).
        _subscription_end(subscription, SubscriptionStatus.EXPIRED, "first_payment_failed")
    else:
        # A charge the customer must confirm gets its pay link on the next run, not days
        # later: waiting would not change the bank's answer.
        needs_customer = payment.off_session and payment.failure_code in NEEDS_CUSTOMER_CODES
        _renewal_failed(subscription, timezone.now(), retry_now=needs_customer)


def _on_refund(refund: Refund) -> None:
    """Refunding a subscription's payment in full cancels the subscription."""
    payment = Payment.objects.get(pk=refund.payment_id)
    if payment.status != PaymentStatus.REFUNDED:
        return
    invoice = (
        Invoice.objects.filter(payment=payment).exclude(subscription_id="").order_by("-id").first()
    )
    if invoice is None:
        return
    subscription = _locked(invoice.subscription_id)
    if subscription.status not in ENDED_STATUSES:
        _subscription_end(subscription, SubscriptionStatus.CANCELED, "refunded")


def subscription_announce(subscription: Subscription, event_type: str) -> None:
    from subscriptions.serializers import SubscriptionOutputSerializer

    outcomes.announce_object(subscription, event_type, SubscriptionOutputSerializer)
