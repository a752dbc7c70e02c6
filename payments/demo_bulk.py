"""
Bulk demo payments (`manage.py seed_demo --payments N`): three months of a merchant's
history, fast enough for a million payments, so the back office can be tried (and timed)
at a realistic size.

The rows are the ones the services would have written over those months, inserted
directly instead (the services lock a row and announce every step: a million payments
through them would take hours):

- payments spread over the last 90 days, each with a ULID made from its own `created_at`
  (lists turn created ranges into id ranges, so an id must tell its time), in a plausible
  mix of statuses, providers and currencies, with the provider's ids, card details,
  decline codes, retries of failed orders and the timeline a real payment leaves;
- the refunds of refunded payments; credit grants, spends and returns for payments made
  with credits, and the customers' balances;
- the sandbox provider's own records of its payments and refunds, so its books agree with
  ours;
- customers with emails and external ids (`user-100000`…; one for about every 50
  payments, up to 20,000), created once and reused by later runs.

The ledger is billing's, and payments never imports billing: each batch's money outcomes
(the `payment.succeeded`, `refund.succeeded` and `credit.granted` the services would have
announced) go to `book`, inside the batch's transaction; `seed_demo` books them. Not made
for these rows: invoices, merchant callbacks, provider webhooks.

Each batch is one transaction, so an interrupted run leaves whole batches, and a later run
adds to them (order numbers go on from the bulk payments already there). Content comes
from a seeded `random.Random`: the same seed on the same database gives the same data,
times aside (they follow the clock).
"""

import bisect
import json
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, models, transaction

from payments import money, providers
from payments.models import (
    CreditTransaction,
    Customer,
    CustomerBalance,
    Merchant,
    Payment,
    PaymentEvent,
    PaymentStatus,
    Refund,
    RefundStatus,
    SandboxPayment,
    SandboxPaymentMethod,
    SandboxRefund,
)
from payments.outcomes import Outcome
from payments.sandbox.gateway import DECLINE_MESSAGES

BATCH_SIZE = 50_000
DEMO_BULK_SEED = 20_241_125
WINDOW = timedelta(days=90)
CUSTOMERS_MAX = 20_000
# In every bulk payment's metadata: how a later run counts the ones already there.
BULK_MARK = "demo_bulk"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Times are integer microseconds since the epoch until they are stored: exact, and cheap.
_MS = 1_000
_SECOND = 1_000_000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_WINDOW_US = WINDOW // timedelta(microseconds=1)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [_CROCKFORD[i >> 5] + _CROCKFORD[i & 31] for i in range(1024)]
_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

_API, _PROVIDER, _ADMIN, _TASK = (s.value for s in PaymentEvent.Source)
_PENDING = PaymentStatus.PENDING.value
_REQUIRES_CAPTURE = PaymentStatus.REQUIRES_CAPTURE.value
_SUCCEEDED = PaymentStatus.SUCCEEDED.value
_FAILED = PaymentStatus.FAILED.value
_CANCELED = PaymentStatus.CANCELED.value
_PARTIALLY_REFUNDED = PaymentStatus.PARTIALLY_REFUNDED.value
_REFUNDED = PaymentStatus.REFUNDED.value
_SANDBOX_STATUS = {
    _PENDING: SandboxPayment.Status.OPEN.value,
    _REQUIRES_CAPTURE: SandboxPayment.Status.REQUIRES_CAPTURE.value,
    _SUCCEEDED: SandboxPayment.Status.SUCCEEDED.value,
    _PARTIALLY_REFUNDED: SandboxPayment.Status.SUCCEEDED.value,
    _REFUNDED: SandboxPayment.Status.SUCCEEDED.value,
    _FAILED: SandboxPayment.Status.FAILED.value,
    _CANCELED: SandboxPayment.Status.CANCELED.value,
}

# --- What is sold, to whom, how ---------------------------------------------------------------

# (currency, weight); then each currency's providers, (name, weight).
_CURRENCIES = [("RUB", 86), ("USD", 8), ("EUR", 6)]
_PROVIDERS = {
    "RUB": [(providers.YOOKASSA, 62), (providers.SANDBOX, 33), (providers.CREDITS, 5)],
    "USD": [(providers.STRIPE, 80), (providers.SANDBOX, 20)],
    "EUR": [(providers.STRIPE, 80), (providers.SANDBOX, 20)],
}
# What `provider=` may force for every bulk payment: a provider of every demo currency.
BULK_PROVIDERS = sorted(
    set.intersection(*({name for name, _ in pairs} for pairs in _PROVIDERS.values()))
)
# Plans (the demo's online cinema), rentals, and the odd other amount, in minor units.
_PLANS = {
    "RUB": [("Basic", 29900), ("Premium", 59900), ("Family", 89900)],
    "USD": [("Basic", 499), ("Premium", 999), ("Family", 1499)],
    "EUR": [("Basic", 499), ("Premium", 899), ("Family", 1299)],
}
_RENTALS = {"RUB": [9900, 14900, 19900, 24900, 39900], "USD": [299, 399, 599], "EUR": [299, 399]}
_FILMS = [
    "The Long Winter", "Night Train to Kazan", "Paper Moons", "The Quiet Harbour",
    "Northern Lights", "A Map of Small Things", "The Last Tram", "Glass Orchard",
    "Seven Bridges", "Saltwater", "The Clockmaker's Daughter", "Red Sky at Morning",
]  # fmt: skip
_DECLINES = {
    providers.SANDBOX: [("card_declined", 1), ("insufficient_funds", 1), ("expired_card", 1)],
    providers.STRIPE: [
        ("card_declined", 40), ("insufficient_funds", 30), ("expired_card", 10),
        ("incorrect_cvc", 10), ("processing_error", 5), ("authentication_required", 5),
    ],
    providers.YOOKASSA: [
        ("insufficient_funds", 35), ("general_decline", 20), ("3d_secure_failed", 15),
        ("call_issuer", 10), ("card_expired", 8), ("expired_on_confirmation", 7),
        ("fraud_suspected", 5),
    ],
}  # fmt: skip
_DECLINE_MESSAGES = {
    **DECLINE_MESSAGES,
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
    "general_decline": "The payment was declined.",
    "3d_secure_failed": "3-D Secure authentication failed.",
    "call_issuer": "The issuer declined the payment; the buyer should contact it.",
    "card_expired": "The card has expired.",
    "expired_on_confirmation": "The buyer did not complete the payment in time.",
    "fraud_suspected": "The payment was blocked as suspected fraud.",
}
_REFUND_REASONS = ["requested_by_customer", "duplicate", "Playback problems", "goodwill", ""]
_BRANDS = [("visa", 42), ("mastercard", 33), ("mir", 20), ("amex", 5)]
_FIRST_NAMES = [
    ("Ivan", "m"), ("Dmitry", "m"), ("Sergey", "m"), ("Alexey", "m"), ("Nikolai", "m"),
    ("Pavel", "m"), ("Mikhail", "m"), ("John", "m"), ("David", "m"), ("Tom", "m"),
    ("Anna", "f"), ("Olga", "f"), ("Maria", "f"), ("Elena", "f"), ("Natalia", "f"),
    ("Irina", "f"), ("Daria", "f"), ("Emma", "f"), ("Sophie", "f"), ("Laura", "f"),
]  # fmt: skip
_LAST_NAMES = [
    ("Ivanov", "Ivanova"), ("Petrov", "Petrova"), ("Smirnov", "Smirnova"),
    ("Volkov", "Volkova"), ("Sokolov", "Sokolova"), ("Popov", "Popova"),
    ("Lebedev", "Lebedeva"), ("Kozlov", "Kozlova"), ("Novikov", "Novikova"),
    ("Morozov", "Morozova"), ("Smith", "Smith"), ("Brown", "Brown"), ("Miller", "Miller"),
]  # fmt: skip
_EMAIL_DOMAINS = ["example.com", "example.org", "example.net"]
# Payments per hour of the day (Moscow time): few at night, most in the evening.
_DIURNAL = [
    0.25, 0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.35, 0.5, 0.55, 0.6, 0.6,
    0.6, 0.6, 0.6, 0.6, 0.65, 0.7, 0.85, 1.0, 1.0, 0.95, 0.75, 0.45,
]  # fmt: skip

_METADATA = json.dumps({"seed": BULK_MARK})
_RETURN_URL = "https://cinema.example/account/payments"


def _cumulative(pairs):
    names = [name for name, _ in pairs]
    total, cumulative = 0, []
    for _, weight in pairs:
        total += weight
        cumulative.append(total)
    return names, cumulative


_CURRENCY_PICK = _cumulative(_CURRENCIES)
_PROVIDER_PICK = {currency: _cumulative(pairs) for currency, pairs in _PROVIDERS.items()}
_DECLINE_PICK = {provider: _cumulative(pairs) for provider, pairs in _DECLINES.items()}
_BRAND_PICK = _cumulative(_BRANDS)


def _pick(rng: random.Random, pick) -> str:
    names, cumulative = pick
    return names[bisect.bisect(cumulative, rng.random() * cumulative[-1])]


# --- Ids and times ----------------------------------------------------------------------------


def _ulid(us: int, rng: random.Random) -> str:
    """The ULID of `payments.ids` for a moment in microseconds: its millisecond, 80 random bits."""
    value = ((us // _MS) << 80) | rng.getrandbits(80)
    pairs = _PAIRS  # 130 bits (two leading zeros) as 13 pairs of Crockford characters
    return (
        pairs[value >> 120] + pairs[(value >> 110) & 1023] + pairs[(value >> 100) & 1023]
        + pairs[(value >> 90) & 1023] + pairs[(value >> 80) & 1023] + pairs[(value >> 70) & 1023]
        + pairs[(value >> 60) & 1023] + pairs[(value >> 50) & 1023] + pairs[(value >> 40) & 1023]
        + pairs[(value >> 30) & 1023] + pairs[(value >> 20) & 1023] + pairs[(value >> 10) & 1023]
        + pairs[value & 1023]
    )  # fmt: skip


def demo_ulid_at(moment: datetime, rng: random.Random) -> str:
    """A ULID for `moment` (as `payments.ids.ulid_at`), with its random bits from `rng`."""
    return _ulid((moment - _EPOCH) // timedelta(microseconds=1), rng)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _times(rng: random.Random, size: int, begin: int, end: int) -> list[int]:
    """`size` sorted moments in [begin, end), denser in the evening than at night."""
    span, out, diurnal = end - begin, [], _DIURNAL
    while len(out) < size:
        moment = begin + int(rng.random() * span)
        if rng.random() < diurnal[(moment // _HOUR + 3) % 24]:
            out.append(moment)
    out.sort()
    return out


# --- Writing rows -----------------------------------------------------------------------------


def rows_insert(model: type[models.Model], columns: list[str], rows: list[tuple]) -> None:
    """
    Insert `rows` (values for `columns`, given by attname) into `model`'s table as they
    are: ids and timestamps included. Columns not named get their field's default.

    PostgreSQL: one `COPY … FROM STDIN` (JSON values as JSON text). Elsewhere (SQLite, the
    embedded default): `executemany` of prepared values, in chunks. Not `bulk_create`: it
    would overwrite every `auto_now_add` time with the present. Runs in the caller's
    transaction; no signals, no `save()` (which the ledger's append-only models refuse for
    existing rows, and which would be a query a row).
    """
    if not rows:
        return
    meta = model._meta
    named = [meta.get_field(column) for column in columns]
    rest = [
        f for f in meta.concrete_fields
        if f.attname not in columns and not isinstance(f, models.AutoField)
    ]  # fmt: skip
    quote = connection.ops.quote_name
    names = ", ".join(quote(f.column) for f in [*named, *rest])
    table = quote(meta.db_table)
    if _copy_supported():
        extra = tuple(_copy_value(f, f.get_default()) for f in rest)
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row + extra if extra else row)
        return
    fields = [*named, *rest]
    extra = tuple(f.get_default() for f in rest)
    # Quoted identifiers from the model's own metadata; every value is a parameter.
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {table} ({names}) VALUES ({placeholders})"  # noqa: S608
    with connection.cursor() as cursor:
        for offset in range(0, len(rows), 5_000):
            cursor.executemany(
                sql,
                [
                    tuple(_prepared(f, value) for f, value in zip(fields, row + extra, strict=True))
                    for row in rows[offset : offset + 5_000]
                ],
            )


def _copy_supported() -> bool:
    return connection.vendor == "postgresql"


def _copy_value(f: models.Field, value):
    return json.dumps(value) if isinstance(f, models.JSONField) else value


def _prepared(f: models.Field, value):
    if isinstance(f, models.JSONField) and isinstance(value, str):
        return value  # JSON text already
    return f.get_db_prep_save(value, connection)


# --- Customers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Customer:
    id: str
    card_brand: str
    card_last4: str
    sandbox_method_id: str  # the card as the sandbox knows it


def _customers_wanted(count: int) -> int:
    # About 50 payments each (subscriptions, rentals and retries over three months).
    return max(20, min(CUSTOMERS_MAX, count // 50))


def _customer_card(customer_id: str) -> tuple[str, str]:
    """A customer's card, the same in every run (derived from the id)."""
    rng = random.Random(customer_id)
    return _pick(rng, _BRAND_PICK), f"{rng.randrange(10_000):04d}"


def _customers_ensure(merchant: Merchant, wanted: int, *, seed: int, now: int) -> list[_Customer]:
    """The bulk customers `user-100000`… (`wanted` of them), creating those not there yet."""
    external_ids = [f"user-{100_000 + k}" for k in range(wanted)]
    existing = dict(
        Customer.objects.filter(merchant=merchant, external_id__in=external_ids).values_list(
            "external_id", "id"
        )
    )
    rows = []
    for k, external_id in enumerate(external_ids):
        if external_id in existing:
            continue
        rng = random.Random(f"{seed}:customer:{merchant.pk}:{k}")
        first, gender = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)[0 if gender == "m" else 1]
        email = f"{first}.{last}.{k}@{rng.choice(_EMAIL_DOMAINS)}".lower()
        # Customers sign up before the window the payments fill.
        created = now - _WINDOW_US - int(rng.random() * 300 * _DAY)
        customer_id = f"cus_{_ulid(created, rng)}"
        existing[external_id] = customer_id
        rows.append(
            (customer_id, merchant.pk, external_id, email, f"{first} {last}", "{}", _dt(created))
        )
    customers = []
    for external_id in external_ids:
        customer_id = existing[external_id]
        brand, last4 = _customer_card(customer_id)
        customers.append(_Customer(customer_id, brand, last4, f"sbx_pm_{customer_id[4:]}"))
    methods_there = set(
        SandboxPaymentMethod.objects.filter(
            pk__in=[c.sandbox_method_id for c in customers]
        ).values_list("pk", flat=True)
    )
    methods = [
        (c.sandbox_method_id, c.card_brand, c.card_last4, False, False, _dt(now - _WINDOW_US))
        for c in customers
        if c.sandbox_method_id not in methods_there
    ]
    with transaction.atomic():
        rows_insert(
            Customer,
            ["id", "merchant_id", "external_id", "email", "name", "metadata", "created_at"],
            rows,
        )
        rows_insert(
            SandboxPaymentMethod,
            ["id", "card_brand", "card_last4", "declines_off_session", "reusable", "created_at"],
            methods,
        )
    return customers


# --- Payments ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoneyMove:
    """An outcome the services would have announced for a bulk row, and when it happened."""

    outcome: Outcome
    at: datetime


Book = Callable[[list["MoneyMove"]], None]
Progress = Callable[[int, int], None]

_PAYMENT_COLUMNS = [
    "id", "merchant_id", "customer_id", "livemode", "amount", "currency", "status", "capture",
    "amount_captured", "amount_refunded", "provider", "provider_payment_id",
    "provider_checkout_id", "provider_checkout_url", "provider_payment_method_id",
    "provider_customer_id", "payment_method_types", "card_brand", "card_last4", "description",
    "order_id", "reference", "metadata", "return_url", "line_items", "save_payment_method",
    "off_session", "failure_code", "failure_message", "dispatch_attempts", "last_dispatched_at",
    "created_at", "updated_at", "completed_at",
]  # fmt: skip
_SANDBOX_PAYMENT_COLUMNS = [
    "id", "idempotency_key", "reference", "amount", "currency", "manual_capture", "status",
    "amount_captured", "amount_refunded", "payment_method_id", "save_payment_method",
    "off_session", "failure_code", "failure_message", "return_url", "description",
    "created_at", "updated_at",
]  # fmt: skip
_REFUND_COLUMNS = [
    "id", "payment_id", "merchant_id", "livemode", "amount", "currency", "status", "reason",
    "provider", "provider_refund_id", "failure_reason", "source", "actor", "dispatch_attempts",
    "last_dispatched_at", "created_at", "updated_at", "completed_at",
]  # fmt: skip
_SANDBOX_REFUND_COLUMNS = [
    "id", "idempotency_key", "reference", "payment_id", "amount", "status", "created_at",
]  # fmt: skip
_CREDIT_COLUMNS = [
    "id", "customer_id", "livemode", "type", "amount", "currency", "description", "payment_id",
    "refund_id", "balance_after", "source", "actor", "created_at",
]  # fmt: skip
_EVENT_COLUMNS = [
    "id", "payment_id", "type", "from_status", "to_status", "source", "actor", "data",
    "created_at",
]  # fmt: skip


@dataclass
class _Batch:
    payments: list = field(default_factory=list)
    sandbox_payments: list = field(default_factory=list)
    refunds: list = field(default_factory=list)
    sandbox_refunds: list = field(default_factory=list)
    credits: list = field(default_factory=list)
    events: list = field(default_factory=list)
    moves: list = field(default_factory=list)
    # (customer id, currency) -> credit returned by refunds: the balance rows' change.
    balances: dict = field(default_factory=dict)

    def insert(self, now: int) -> None:
        rows_insert(Payment, _PAYMENT_COLUMNS, self.payments)
        rows_insert(SandboxPayment, _SANDBOX_PAYMENT_COLUMNS, self.sandbox_payments)
        rows_insert(Refund, _REFUND_COLUMNS, self.refunds)
        rows_insert(SandboxRefund, _SANDBOX_REFUND_COLUMNS, self.sandbox_refunds)
        rows_insert(CreditTransaction, _CREDIT_COLUMNS, self.credits)
        rows_insert(PaymentEvent, _EVENT_COLUMNS, self.events)
        _balances_add(self.balances, _dt(now))


def _balances_add(changes: dict, at: datetime) -> None:
    """Add to customers' credit balances, creating the rows that are not there yet."""
    if not changes:
        return
    quote = connection.ops.quote_name
    table = quote(CustomerBalance._meta.db_table)
    # An upsert that adds: the same statement on PostgreSQL and SQLite.
    # The quoted table name from the model's metadata; every value is a parameter.
    sql = (
        f"INSERT INTO {table} (customer_id, livemode, currency, amount, updated_at) "  # noqa: S608
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (customer_id, livemode, currency) "
        f"DO UPDATE SET amount = {table}.amount + excluded.amount, updated_at = excluded.updated_at"
    )
    amount_field = CustomerBalance._meta.get_field("amount")
    time_field = CustomerBalance._meta.get_field("updated_at")
    with connection.cursor() as cursor:
        cursor.executemany(
            sql,
            [
                (
                    customer_id,
                    False,
                    currency,
                    amount_field.get_db_prep_save(change, connection),
                    time_field.get_db_prep_save(at, connection),
                )
                for (customer_id, currency), change in sorted(changes.items())
            ],
        )


class _Builder:
    """Makes the rows of one payment after another; state carries over between batches."""

    def __init__(
        self, *, merchant: Merchant, rng: random.Random, customers, now: int, provider=None
    ):
        self.merchant_id = merchant.pk
        self.provider = provider  # every payment through this one, else the usual mix
        self.rng = rng
        self.customers = customers
        self.now = now
        self.base_url = settings.PUBLIC_BASE_URL
        self.retry_of: tuple | None = None  # a failed order the next payment may retry
        # Running credit balances in minor units, for `balance_after`.
        self.credit_balances: dict[tuple[str, str], int] = {
            (customer_id, currency): money.to_minor_units(amount, currency)
            for customer_id, currency, amount in CustomerBalance.objects.filter(
                customer_id__in=[c.id for c in customers], livemode=False
            ).values_list("customer_id", "currency", "amount")
        }
        self.line_items: dict[tuple[str, int, str], str] = {}
        self.exponents = {currency: money.CURRENCY_EXPONENTS[currency] for currency in _PLANS}

    def batch(self, times: list[int], first_number: int) -> _Batch:
        batch = _Batch()
        for offset, created in enumerate(times):
            self._payment(batch, first_number + offset, created)
        return batch

    # What is bought -----------------------------------------------------------------------

    def _purchase(self, currency: str) -> tuple[int, str, str]:
        """(amount in minor units, description, line items as JSON)."""
        rng = self.rng
        u = rng.random()
        if u < 0.58:
            name, minor = rng.choices(_PLANS[currency], cum_weights=(5, 8, 10))[0]
            description = f"{name} plan, 1 month"
        elif u < 0.88:
            minor = rng.choice(_RENTALS[currency])
            description = f"Film rental: {rng.choice(_FILMS)}"
        else:
            exponent = self.exponents[currency]
            whole = rng.randrange(100, 15_000) if currency == "RUB" else rng.randrange(5, 200)
            minor = whole * 10**exponent + (rng.randrange(10**exponent) if u > 0.97 else 0)
            return minor, "Gift card", "[]"
        key = (currency, minor, description)
        items = self.line_items.get(key)
        if items is None:
            amount = self._format(minor, currency)
            items = self.line_items[key] = json.dumps(
                [
                    {
                        "description": description,
                        "quantity": 1,
                        "unit_amount": amount,
                        "amount": amount,
                    }
                ]
            )
        return minor, description, items

    def _decimal(self, minor: int, currency: str) -> Decimal:
        return Decimal(minor).scaleb(-self.exponents[currency])

    def _format(self, minor: int, currency: str) -> str:
        # What `money.amount_format` gives (exactly the currency's decimals), made cheaply.
        return f"{self._decimal(minor, currency):f}"

    def _between(self, low: int, high: int) -> int:
        return low + int(self.rng.random() * (high - low))

    # One payment --------------------------------------------------------------------------

    def _payment(self, batch: _Batch, number: int, created: int) -> None:
        rng, now = self.rng, self.now
        retry, self.retry_of = self.retry_of, None
        if retry is not None and rng.random() < 0.6:
            # The buyer tries the failed order again a moment later (a new payment: the
            # failed one no longer holds the order id).
            customer, currency, provider, minor, description, items, order_id, capture = retry
        else:
            currency = _pick(rng, _CURRENCY_PICK)
            mixed = _pick(rng, _PROVIDER_PICK[currency])  # drawn either way: same data
            provider = self.provider or mixed
            customer = None
            if provider in (providers.CREDITS, providers.SANDBOX) or rng.random() < 0.92:
                # Some customers buy much more than others.
                customer = self.customers[int(len(self.customers) * rng.random() ** 1.5)]
            minor, description, items = self._purchase(currency)
            order_id = f"ORD-{number + 1:08d}"
            capture = provider == providers.CREDITS or rng.random() >= 0.03
        credits = provider == providers.CREDITS
        payment_id = f"pay_{_ulid(created, rng)}"
        amount = self._decimal(minor, currency)

        # What happened, and when (never after now: what is still to come is pending).
        status, failure_code, authorized, paid, ended = _PENDING, "", None, None, None
        if credits:
            status, paid = _SUCCEEDED, created + self._between(50 * _MS, 400 * _MS)
        else:
            u = rng.random()
            acted = created + self._between(20 * _SECOND, 8 * _MINUTE)  # on the checkout page
            if acted > now:
                pass  # the buyer is still on the page
            elif u < 0.10:
                status, ended = _FAILED, acted
                failure_code = _pick(rng, _DECLINE_PICK[provider])
            elif u < 0.16:
                # Abandoned: the checkout expires a day later.
                if created + _DAY <= now:
                    status, ended = _CANCELED, created + _DAY
            elif capture:
                status, paid = _SUCCEEDED, acted
            else:
                status, authorized = _REQUIRES_CAPTURE, acted
                later = acted + self._between(10 * _MINUTE, 6 * _DAY)
                if now - acted > 7 * _DAY or (later <= now and rng.random() < 0.5):
                    later = min(later, now)
                    if rng.random() < 0.1:
                        status, ended = _CANCELED, later  # voided by the merchant
                    else:
                        status, paid = _SUCCEEDED, later  # captured
        if credits or status == _PENDING or (status == _CANCELED and authorized is None):
            card = None  # no card: credits, or nobody has paid on the page (yet)
        elif customer is not None and not (
            provider == providers.STRIPE and customer.card_brand == "mir"
        ):
            card = customer
        else:
            # A guest, or a Mir card holder paying in dollars or euros with another card.
            brand = _pick(rng, _BRAND_PICK)
            brand = "visa" if brand == "mir" and provider == providers.STRIPE else brand
            card = _Customer("", brand, f"{rng.randrange(10_000):04d}", "")
        completed = paid if paid is not None else ended

        # Refunds of captured money, some time after.
        refunds = []  # (refund id, minor, at)
        refunded_minor = 0
        if paid is not None and paid + _HOUR < now:
            u = rng.random()
            if u < 0.09:
                first = paid + _HOUR + int(rng.random() * min(30 * _DAY, now - paid - _HOUR))
                if u < 0.055 and rng.random() < 0.85:
                    parts = [minor]
                elif u < 0.055:
                    part = max(1, min(minor - 1, int(minor * self._between(10, 60) / 100)))
                    parts = [part, minor - part]
                else:
                    parts = [max(1, min(minor - 1, int(minor * self._between(10, 90) / 100)))]
                at = first
                for part in parts:
                    if at > now:
                        break
                    # Credits are returned at once; a provider confirms in a few minutes.
                    settled = (
                        at if credits else min(now, at + self._between(2 * _SECOND, 5 * _MINUTE))
                    )
                    refunds.append((f"re_{_ulid(at, rng)}", part, at, settled))
                    refunded_minor += part
                    at += self._between(_HOUR, 3 * _DAY)
        if refunds:
            status = _REFUNDED if refunded_minor == minor else _PARTIALLY_REFUNDED
        captured = amount if paid is not None else Decimal(0)
        refunded = self._decimal(refunded_minor, currency)
        if status == _FAILED:
            # A payment that failed may be retried by the next one.
            self.retry_of = (
                customer, currency, provider, minor, description, items, order_id, capture
            )  # fmt: skip

        # The provider's side.
        dispatched = None if credits else created + self._between(300 * _MS, 2 * _SECOND)
        provider_payment_id = checkout_id = checkout_url = method_id = ""
        confirmed = card is not None
        if provider == providers.SANDBOX:
            provider_payment_id = checkout_id = f"sbx_pay_{_ulid(dispatched, rng)}"
            checkout_url = f"{self.base_url}/sandbox/checkout/{checkout_id}"
            method_id = customer.sandbox_method_id if confirmed else ""
        elif provider == providers.STRIPE:
            checkout_id = "cs_test_" + "".join(rng.choices(_ALNUM, k=58))
            checkout_url = f"https://checkout.stripe.com/c/pay/{checkout_id}"
            if confirmed:  # Checkout makes the PaymentIntent when the buyer confirms
                provider_payment_id = "pi_" + "".join(rng.choices(_ALNUM, k=24))
        elif provider == providers.YOOKASSA:
            provider_payment_id = checkout_id = (
                f"{(dispatched // _SECOND) & 0xFFFFFFFF:08x}-000f-5000-{rng.choice('89ab')}000-"
                f"{rng.getrandbits(48):012x}"
            )
            checkout_url = (
                f"https://yoomoney.ru/checkout/payments/v2/contract?orderId={checkout_id}"
            )
        last_change = refunds[-1][3] if refunds else (completed or authorized or created)
        failure_message = _DECLINE_MESSAGES.get(failure_code, "") if failure_code else ""
        batch.payments.append(
            (
                payment_id, self.merchant_id, customer.id if customer else None, False, amount,
                currency, status, capture, captured, refunded, provider, provider_payment_id,
                checkout_id, checkout_url, method_id, "",
                '["credits"]' if credits else '["card"]' if confirmed else "[]",
                card.card_brand if card else "", card.card_last4 if card else "", description,
                order_id, "", _METADATA, "" if credits else _RETURN_URL, items, False, False,
                failure_code, failure_message, 0 if credits else 1,
                _dt(dispatched) if dispatched else None, _dt(created), _dt(last_change),
                _dt(completed) if completed else None,
            )
        )  # fmt: skip
        if provider == providers.SANDBOX:
            batch.sandbox_payments.append(
                (
                    provider_payment_id, f"checkout-{payment_id}", payment_id, amount, currency,
                    not capture, _SANDBOX_STATUS[status], captured, refunded,
                    method_id or None, False, False, failure_code, failure_message,
                    _RETURN_URL, description, _dt(dispatched), _dt(last_change),
                )
            )  # fmt: skip

        # The timeline, and the money the ledger books.
        events = batch.events
        amount_text = self._format(minor, currency)
        events.append(
            (
                f"pev_{_ulid(created, rng)}", payment_id, "created", "", _PENDING, _API, "",
                json.dumps({"amount": amount_text, "currency": currency, "provider": provider}),
                _dt(created),
            )
        )  # fmt: skip
        step = _PENDING
        if authorized is not None:
            events.append(self._event(payment_id, authorized, step, _REQUIRES_CAPTURE, _PROVIDER))
            step = _REQUIRES_CAPTURE
        if paid is not None:
            source = _API if credits or authorized is not None else _PROVIDER
            data = '{"paid_with": "credits"}' if credits else "{}"
            events.append(self._event(payment_id, paid, step, _SUCCEEDED, source, data=data))
            customer_id = customer.id if customer else None
            batch.moves.append(
                MoneyMove(
                    Outcome(
                        type="payment.succeeded",
                        merchant_id=self.merchant_id,
                        livemode=False,
                        object_id=payment_id,
                        data={
                            "id": payment_id, "object": "payment", "status": _SUCCEEDED,
                            "amount": amount_text, "currency": currency,
                            "amount_captured": amount_text,
                            "amount_refunded": self._format(0, currency),
                            "provider": provider, "customer": customer_id,
                        },
                    ),
                    _dt(paid),
                )
            )  # fmt: skip
            step = _SUCCEEDED
        elif ended is not None:
            source = _TASK if authorized is None and status == _CANCELED else _PROVIDER
            if authorized is not None:
                source = _API
            data = json.dumps({"failure_code": failure_code}) if failure_code else "{}"
            events.append(self._event(payment_id, ended, step, status, source, data=data))
        if credits:
            self._credits(
                batch, customer.id, currency, minor, description, payment_id, created, paid
            )
        so_far = 0
        for refund_id, part, at, settled in refunds:
            self._refund(
                batch, payment_id, provider, provider_payment_id, customer, currency, part, at,
                settled, refund_id, minor, so_far, step,
            )  # fmt: skip
            so_far += part
            step = _REFUNDED if so_far == minor else _PARTIALLY_REFUNDED

    def _event(self, payment_id, at, from_status, to_status, source, *, data="{}", type_=None):
        return (
            f"pev_{_ulid(at, self.rng)}", payment_id, type_ or to_status, from_status,
            to_status, source, "admin" if source == _ADMIN else "", data, _dt(at),
        )  # fmt: skip

    def _credits(self, batch, customer_id, currency, minor, description, payment_id, created, paid):
        """A grant of the amount a little before, then the spend: the balance never overdraws."""
        rng = self.rng
        key = (customer_id, currency)
        balance = self.credit_balances.get(key, 0)
        granted = created - self._between(5 * _MINUTE, 3 * _DAY)
        grant_id = f"cbt_{_ulid(granted, rng)}"
        amount = self._decimal(minor, currency)
        balance += minor
        batch.credits.append(
            (
                grant_id, customer_id, False, CreditTransaction.Type.GRANT.value, amount,
                currency, "Top-up", None, None, self._decimal(balance, currency), _API, "",
                _dt(granted),
            )
        )  # fmt: skip
        balance -= minor
        batch.credits.append(
            (
                f"cbt_{_ulid(paid, rng)}", customer_id, False, CreditTransaction.Type.SPEND.value,
                amount, currency, description, payment_id, None, self._decimal(balance, currency),
                _API, "", _dt(paid),
            )
        )  # fmt: skip
        self.credit_balances[key] = balance
        batch.balances.setdefault(key, Decimal(0))
        batch.moves.append(
            MoneyMove(
                Outcome(
                    type="credit.granted",
                    merchant_id=self.merchant_id,
                    livemode=False,
                    object_id=grant_id,
                    data={
                        "id": grant_id, "object": "credit_transaction", "customer": customer_id,
                        "type": "grant", "amount": self._format(minor, currency),
                        "currency": currency, "payment": None, "refund": None,
                    },
                ),
                _dt(granted),
            )
        )  # fmt: skip

    def _refund(
        self, batch, payment_id, provider, provider_payment_id, customer, currency, part, at,
        settled, refund_id, minor, so_far, step,
    ):  # fmt: skip
        rng = self.rng
        credits = provider == providers.CREDITS
        source, actor = (_ADMIN, "admin") if rng.random() < 0.5 else (_API, "")
        reason = rng.choice(_REFUND_REASONS)
        amount = self._decimal(part, currency)
        amount_text = self._format(part, currency)
        provider_refund_id = ""
        if provider == providers.SANDBOX:
            provider_refund_id = f"sbx_re_{_ulid(at + _SECOND, rng)}"
            batch.sandbox_refunds.append(
                (
                    provider_refund_id, f"refund-{refund_id}", refund_id, provider_payment_id,
                    amount, "succeeded", _dt(at + _SECOND),
                )
            )  # fmt: skip
        elif provider == providers.STRIPE:
            provider_refund_id = "re_" + "".join(rng.choices(_ALNUM, k=24))
        elif provider == providers.YOOKASSA:
            provider_refund_id = (
                f"{(at // _SECOND) & 0xFFFFFFFF:08x}-0015-5000-{rng.choice('89ab')}000-"
                f"{rng.getrandbits(48):012x}"
            )
        batch.refunds.append(
            (
                refund_id, payment_id, self.merchant_id, False, amount, currency,
                RefundStatus.SUCCEEDED.value, reason, provider, provider_refund_id, "", source,
                actor, 0 if credits else 1, None if credits else _dt(at + _SECOND), _dt(at),
                _dt(settled), _dt(settled),
            )
        )  # fmt: skip
        data = json.dumps({"refund": refund_id, "amount": amount_text})
        batch.events.append(
            self._event(payment_id, at, "", "", source, data=data, type_="refund_requested")
        )
        to_status = _REFUNDED if so_far + part == minor else _PARTIALLY_REFUNDED
        batch.events.append(
            self._event(
                payment_id, settled, step, to_status, source if credits else _PROVIDER, data=data
            )
        )
        if credits:
            key = (customer.id, currency)
            balance = self.credit_balances[key] + part
            self.credit_balances[key] = balance
            batch.balances[key] = batch.balances.get(key, Decimal(0)) + amount
            batch.credits.append(
                (
                    f"cbt_{_ulid(at, rng)}", customer.id, False,
                    CreditTransaction.Type.REFUND.value, amount, currency, reason, payment_id,
                    refund_id, self._decimal(balance, currency), source, actor, _dt(at),
                )
            )  # fmt: skip
        batch.moves.append(
            MoneyMove(
                Outcome(
                    type="refund.succeeded",
                    merchant_id=self.merchant_id,
                    livemode=False,
                    object_id=refund_id,
                    data={
                        "id": refund_id, "object": "refund", "payment": payment_id,
                        "status": RefundStatus.SUCCEEDED.value, "amount": amount_text,
                        "currency": currency, "provider": provider,
                    },
                ),
                _dt(settled),
            )
        )  # fmt: skip


def demo_payments_bulk_count(*, merchant: Merchant) -> int:
    """How many bulk demo payments the merchant has (a scan of its payments: for commands)."""
    return Payment.objects.filter(merchant=merchant, metadata__seed=BULK_MARK).count()


def demo_payments_bulk(
    *,
    merchant: Merchant,
    count: int,
    progress: Progress | None = None,
    seed: int = DEMO_BULK_SEED,
    book: Book | None = None,
    batch_size: int = BATCH_SIZE,
    provider: str | None = None,
) -> int:
    """
    Insert `count` more demo payments for `merchant` (test mode), spread over the last 90
    days, with their refunds, credit movements, timelines and the sandbox's records, one
    transaction per `batch_size` payments. `book(moves)` runs in each batch's transaction
    with the money those payments moved, for the ledger: without it `ledger_check` finds
    them unbooked. `progress(done, count)` is called after each batch commits. `provider`
    (one of BULK_PROVIDERS) takes every payment through that provider instead of the usual
    mix (a million sandbox payments to reconcile, say). Returns the number inserted.

    Demo data only: these rows bypass the services, which every real change goes through.
    """
    if count < 0:
        raise ValueError(f"The number of payments must be 0 or more, not {count}.")
    if provider is not None and provider not in BULK_PROVIDERS:
        raise ValueError(f"Bulk payments can be forced through {BULK_PROVIDERS}, not {provider}.")
    if count == 0:
        return 0
    now = int(time.time() * _SECOND)
    start = demo_payments_bulk_count(merchant=merchant)
    customers = _customers_ensure(merchant, _customers_wanted(count), seed=seed, now=now)
    rng = random.Random(f"{seed}:{merchant.pk}:{start}")
    builder = _Builder(merchant=merchant, rng=rng, customers=customers, now=now, provider=provider)

    def batches():
        done = 0
        while done < count:
            size = min(batch_size, count - done)
            # Each batch fills its share of the window: ids arrive (nearly) in ascending order.
            begin = now - _WINDOW_US + _WINDOW_US * done // count
            end = now - _WINDOW_US + _WINDOW_US * (done + size) // count
            yield builder.batch(_times(rng, size, begin, end), start + done)
            done += size

    done = 0
    with _Ahead(batches()) as ahead:
        for batch in ahead:
            with transaction.atomic():
                batch.insert(now)
                if book is not None:
                    book(batch.moves)
            done += len(batch.payments)
            if progress is not None:
                progress(done, count)
    tables_analyze(
        [Customer, Payment, PaymentEvent, Refund, CreditTransaction, CustomerBalance]
        + [SandboxPayment, SandboxPaymentMethod, SandboxRefund]
    )
    return done


def tables_analyze(models_: list[type[models.Model]]) -> None:
    """
    After a bulk load on PostgreSQL: `VACUUM ANALYZE` the tables, so the next list is
    planned for the rows now there (not for an empty table) and its index-only scans need
    no heap visits (the visibility map is set); autovacuum would get there minutes later.
    Inside a transaction (tests) VACUUM cannot run: only ANALYZE.
    """
    if connection.vendor != "postgresql":
        return
    command = "ANALYZE" if connection.in_atomic_block else "VACUUM ANALYZE"
    with connection.cursor() as cursor:
        for model in models_:
            cursor.execute(f"{command} {connection.ops.quote_name(model._meta.db_table)}")


class _Ahead:
    """
    An iterator run one item ahead in a thread: the next batch is made (pure Python, no
    database) while PostgreSQL is busy writing this one, which about halves the time on
    two cores.
    """

    _END = object()

    def __init__(self, iterator):
        self._queue = queue.Queue(maxsize=1)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iterator,), daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stopped.set()
        self._thread.join()

    def _run(self, iterator) -> None:
        try:
            for item in iterator:
                if not self._put((item, None)):
                    return
            self._put((self._END, None))
        except BaseException as exc:  # handed to the consuming thread, which raises it
            self._put((None, exc))

    def _put(self, entry) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            item, exc = self._queue.get()
            if exc is not None:
                raise exc
            if item is self._END:
                return
            yield item
