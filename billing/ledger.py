"""
Ledger services: book the money outcomes payments announce, read balances as sums of the
ledger, and prove the ledger consistent with itself and with payments (`ledger_check`).

Booking runs as an outcomes listener, inside the transaction of the change it books: a
payment is captured and booked together, or neither is. A failure to book therefore
refuses the change itself, which is the point: money never moves off the books.

A reconciliation correction (`payment.reconciled`: staff took the provider's state) is
booked as an adjustment: whatever brings the payment's booked net to what it now holds,
captured less refunded (nothing, when it holds no money), in one balanced transaction.
"""

import random
from dataclasses import dataclass
from decimal import Decimal

from django.apps import apps
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Concat

from billing.models import LedgerEntry, LedgerTransaction
from payments import providers
from payments.demo_bulk import MoneyMove, demo_ulid_at, rows_insert
from payments.models import Payment, PaymentStatus
from payments.outcomes import Outcome

SALES = "sales"
CREDITS_ISSUED = "credits_issued"

# The outcomes that book a payment's capture: the capture itself, and reconciliation's
# corrections (which may be the first money a payment ever books).
CAPTURE_KINDS = ["payment.succeeded", "payment.reconciled"]

# Statuses of a payment that has taken money; each has a capture booking.
CAPTURED_STATUSES = [
    PaymentStatus.SUCCEEDED,
    PaymentStatus.PARTIALLY_REFUNDED,
    PaymentStatus.REFUNDED,
]

_ZERO = Decimal(0)


class LedgerError(Exception):
    """An outcome the ledger cannot book as its contract describes."""


def provider_receivable(provider: str) -> str:
    return f"provider_receivable:{provider}"


def customer_credit(customer_id: str) -> str:
    return f"customer_credit:{customer_id}"


@dataclass(frozen=True)
class _Booking:
    debit: str
    credit: str
    amount: Decimal
    currency: str
    payment_id: str | None
    description: str


def ledger_book(outcome: Outcome) -> LedgerTransaction | None:
    """
    Book one announced outcome as a balanced transaction (debit one account, credit
    another, same amount), in the caller's transaction. Outcomes that move no money book
    nothing. Idempotent: an outcome already booked (same kind and object) is not booked
    again, also when two transactions race to book it.
    """
    booking = _booking_for(outcome)
    if booking is None:
        return None
    try:
        # A savepoint: losing the race on the unique constraint must not abort the
        # caller's transaction, only this insert.
        with transaction.atomic():
            booked = LedgerTransaction.objects.create(
                merchant_id=outcome.merchant_id,
                livemode=outcome.livemode,
                kind=outcome.type,
                reference=outcome.object_id,
                payment_id=booking.payment_id,
                description=booking.description[:500],
            )
            LedgerEntry.objects.bulk_create(
                [
                    LedgerEntry(
                        transaction=booked,
                        account=booking.debit,
                        currency=booking.currency,
                        amount=booking.amount,
                    ),
                    LedgerEntry(
                        transaction=booked,
                        account=booking.credit,
                        currency=booking.currency,
                        amount=-booking.amount,
                    ),
                ]
            )
    except IntegrityError:
        if LedgerTransaction.objects.filter(
            kind=outcome.type, reference=outcome.object_id
        ).exists():
            return None  # booked already: a repeated announcement
        raise
    return booked


def _booking_for(outcome: Outcome) -> _Booking | None:
    data = outcome.data
    if outcome.type == "payment.succeeded":
        amount = _amount(outcome, data["amount_captured"])
        if data["provider"] == providers.CREDITS:
            # The customer's prepaid credit is consumed: we owe them less.
            debit = customer_credit(_required(outcome, data.get("customer"), "customer"))
        else:
            debit = provider_receivable(data["provider"])
        return _Booking(
            debit=debit,
            credit=SALES,
            amount=amount,
            currency=data["currency"],
            payment_id=outcome.object_id,
            description=f"Payment {outcome.object_id} captured ({data['provider']})",
        )
    if outcome.type == "refund.succeeded":
        payment_id = data["payment"]
        if data["provider"] == providers.CREDITS:
            # The credit goes back to whoever paid with it: the refund's payment's customer.
            customer_id = (
                Payment.objects.filter(pk=payment_id).values_list("customer_id", flat=True).first()
            )
            credit = customer_credit(_required(outcome, customer_id, "the payment's customer"))
        else:
            credit = provider_receivable(data["provider"])
        return _Booking(
            debit=SALES,
            credit=credit,
            amount=_amount(outcome, data["amount"]),
            currency=data["currency"],
            payment_id=payment_id,
            description=f"Refund {outcome.object_id} of payment {payment_id} ({data['provider']})",
        )
    if outcome.type == "payment.reconciled":
        return _reconciliation_adjustment(outcome)
    if outcome.type in ("credit.granted", "credit.deducted"):
        account = customer_credit(_required(outcome, data.get("customer"), "customer"))
        granted = outcome.type == "credit.granted"
        return _Booking(
            debit=CREDITS_ISSUED if granted else account,
            credit=account if granted else CREDITS_ISSUED,
            amount=_amount(outcome, data["amount"]),
            currency=data["currency"],
            payment_id=None,
            description=f"Credit {'granted' if granted else 'deducted'} ({outcome.object_id})",
        )
    return None  # failed, canceled, authorized-only…: no money moved


def _reconciliation_adjustment(outcome: Outcome) -> _Booking | None:
    """
    The booking that brings a corrected payment's net in the ledger to what it holds now:
    its captured amount less refunds when it took money, zero otherwise. Read under the
    payment's row lock (the correction holds it), so the difference is exact; nothing is
    booked when there is none. `outcome.object_id` is the correction's timeline step.
    """
    data = outcome.data
    payment_id, currency, provider = data["id"], data["currency"], data["provider"]
    if provider == providers.CREDITS:
        raise LedgerError(f"{outcome.type} {outcome.object_id}: credits are not reconciled")
    held = (
        Decimal(data["amount_captured"]) - Decimal(data["amount_refunded"])
        if data["status"] in CAPTURED_STATUSES
        else _ZERO
    )
    # Sales is credit-normal: the payment's booked net is minus its sales entries.
    booked = _ZERO - (
        LedgerEntry.objects.filter(
            account=SALES, currency=currency, transaction__payment_id=payment_id
        ).aggregate(total=Sum("amount"))["total"]
        or _ZERO
    )
    difference = held - booked
    if difference == 0:
        return None
    receivable = provider_receivable(provider)
    more = difference > 0
    return _Booking(
        debit=receivable if more else SALES,
        credit=SALES if more else receivable,
        amount=abs(difference),
        currency=currency,
        payment_id=payment_id,
        description=(
            f"Reconciliation of payment {payment_id} ({provider}): booked net {booked}, "
            f"now {held} {currency}"
        ),
    )


def _amount(outcome: Outcome, raw: str) -> Decimal:
    amount = Decimal(raw)
    if amount < 0:
        # The sign is the ledger's to give; a negative amount would book the wrong way.
        raise LedgerError(f"{outcome.type} {outcome.object_id}: negative amount {raw}")
    return amount


def _required(outcome: Outcome, value: str | None, what: str) -> str:
    if not value:
        raise LedgerError(f"{outcome.type} {outcome.object_id}: no {what} to book against")
    return value


# --- Reads --------------------------------------------------------------------------------


def _negated_sum(entries) -> Decimal:
    total = entries.aggregate(total=Sum("amount"))["total"] or _ZERO
    return _ZERO - total  # not -total: a zero balance reads 0, never -0


def customer_credit_balance(customer_id: str, currency: str) -> Decimal:
    """The prepaid credit we owe a customer in a currency (credit-normal, so negated)."""
    return _negated_sum(
        LedgerEntry.objects.filter(account=customer_credit(customer_id), currency=currency)
    )


def merchant_net_volume(
    merchant_id: str, currency: str, *, livemode: bool | None = None
) -> Decimal:
    """
    A merchant's captured amounts less refunds in a currency. Test and live money are
    different worlds: pass `livemode` to count one of them (None counts both).
    """
    entries = LedgerEntry.objects.filter(
        account=SALES, currency=currency, transaction__merchant_id=merchant_id
    )
    if livemode is not None:
        entries = entries.filter(transaction__livemode=livemode)
    return _negated_sum(entries)


@dataclass(frozen=True)
class LedgerCounts:
    transactions: int
    entries: int
    payments: int


def ledger_counts() -> LedgerCounts:
    """What `ledger_verify` looks at, for the check's summary line."""
    return LedgerCounts(
        transactions=LedgerTransaction.objects.count(),
        entries=LedgerEntry.objects.count(),
        payments=Payment.objects.filter(status__in=CAPTURED_STATUSES).count(),
    )


# --- Verification -------------------------------------------------------------------------


def ledger_verify() -> list[str]:
    """
    Every inconsistency found, in words; empty when the ledger is sound. The sums run in
    the database and only the rows that disagree come back, so this stays cheap.
    """
    return [
        *_unbalanced_transactions(),
        *_payment_nets(),
        *_bookings_of_uncaptured_payments(),
        *_customer_balances(),
    ]


def _unbalanced_transactions() -> list[str]:
    rows = (
        LedgerEntry.objects.values("transaction_id", "currency")
        .annotate(total=Sum("amount"))
        .exclude(total=0)
        .order_by("transaction_id", "currency")
    )
    return [
        f"Transaction {row['transaction_id']} does not balance in {row['currency']}: "
        f"its entries sum to {row['total']}"
        for row in rows.iterator()
    ]


def _payment_nets() -> list[str]:
    sales = (
        LedgerEntry.objects.filter(
            account=SALES,
            transaction__payment_id=OuterRef("pk"),
            currency=OuterRef("currency"),
        )
        .order_by()
        .values("currency")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    payments = (
        Payment.objects.filter(status__in=CAPTURED_STATUSES)
        .annotate(
            booked=Exists(
                LedgerTransaction.objects.filter(kind__in=CAPTURE_KINDS, payment_id=OuterRef("pk"))
            ),
            # Sales is credit-normal: the payment's net is the negated sum.
            ledger_net=Value(_ZERO) - Coalesce(Subquery(sales), Value(_ZERO)),
        )
        .filter(Q(booked=False) | ~Q(ledger_net=F("amount_captured") - F("amount_refunded")))
        .order_by("pk")
    )
    problems = []
    for payment in payments.iterator():
        if not payment.booked:
            problems.append(
                f"Payment {payment.pk} ({payment.status}, captured {payment.amount_captured} "
                f"{payment.currency}) has no payment.succeeded booking in the ledger"
            )
            continue
        expected = payment.amount_captured - payment.amount_refunded
        problems.append(
            f"Payment {payment.pk} ({payment.status}): ledger net {payment.ledger_net} "
            f"{payment.currency}, expected {expected} (captured {payment.amount_captured} "
            f"− refunded {payment.amount_refunded})"
        )
    return problems


def _bookings_of_uncaptured_payments() -> list[str]:
    """
    Money booked against a payment that holds none (or does not exist). A payment that
    took money and was then corrected to none (reconciliation) has bookings that net to
    zero: that is sound, and not reported.
    """
    payment_sales = (
        LedgerEntry.objects.filter(account=SALES, transaction__payment_id=OuterRef("payment_id"))
        .order_by()
        .values("transaction__payment_id")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    stray = (
        LedgerTransaction.objects.filter(payment_id__isnull=False)
        .filter(
            ~Exists(Payment.objects.filter(pk=OuterRef("payment_id"), status__in=CAPTURED_STATUSES))
        )
        .annotate(
            payment_exists=Exists(Payment.objects.filter(pk=OuterRef("payment_id"))),
            payment_sales=Coalesce(Subquery(payment_sales), Value(_ZERO)),
        )
        .exclude(payment_exists=True, payment_sales=0)
        .order_by("pk")
    )
    problems = []
    for booked in stray.iterator():
        status = Payment.objects.filter(pk=booked.payment_id).values_list("status", flat=True)
        problems.append(
            f"Transaction {booked.pk} ({booked.kind} {booked.reference}) books payment "
            f"{booked.payment_id}, which is {status.first() or 'missing'}"
        )
    return problems


def _customer_balances() -> list[str]:
    try:
        CustomerBalance = apps.get_model("payments", "CustomerBalance")
    except LookupError:
        return []  # credit balances are not in payments yet: nothing to compare
    credit = (
        LedgerEntry.objects.filter(
            account=Concat(Value("customer_credit:"), OuterRef("customer_id")),
            currency=OuterRef("currency"),
            transaction__livemode=OuterRef("livemode"),
        )
        .order_by()
        .values("currency")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    balances = (
        CustomerBalance.objects.annotate(
            ledger=Value(_ZERO) - Coalesce(Subquery(credit), Value(_ZERO))
        )
        .exclude(ledger=F("amount"))
        .order_by("customer_id", "currency")
    )
    return [
        f"Customer {balance.customer_id} credit balance {balance.amount} {balance.currency} "
        f"differs from the ledger's {balance.ledger}"
        for balance in balances.iterator()
    ]


# Ledger ids of bulk bookings need no reproducibility, only unpredictability (as ids).
_bulk_ids = random.SystemRandom()


def ledger_book_bulk(moves: list[MoneyMove]) -> int:
    """
    Book bulk money outcomes exactly as `billing.ledger.ledger_book` would, one by one:
    the same booking rule (`_booking_for`), one `LedgerTransaction` per outcome (kind and
    reference) with its two balanced entries, dated when the money moved, and inserted
    with COPY instead of two INSERTs and a savepoint each. In the caller's transaction.
    Returns the number of transactions booked.

    For bulk loads (`seed_demo --payments N`); everything else books through
    `ledger_book`, as outcomes are announced.
    """
    transactions, entries = [], []
    for move in moves:
        outcome, at = move.outcome, move.at
        booking = _booking_for(outcome)
        if booking is None:
            continue
        transaction_id = f"ltx_{demo_ulid_at(at, _bulk_ids)}"
        transactions.append(
            (
                transaction_id,
                outcome.merchant_id,
                outcome.livemode,
                outcome.type,
                outcome.object_id,
                booking.payment_id,
                booking.description[:500],
                at,
            )
        )
        entries.append((transaction_id, booking.debit, booking.currency, booking.amount, at))
        entries.append((transaction_id, booking.credit, booking.currency, -booking.amount, at))
    rows_insert(
        LedgerTransaction,
        ["id", "merchant_id", "livemode", "kind", "reference", "payment_id", "description",
         "created_at"],
        transactions,
    )  # fmt: skip
    rows_insert(
        LedgerEntry, ["transaction_id", "account", "currency", "amount", "created_at"], entries
    )
    return len(transactions)
