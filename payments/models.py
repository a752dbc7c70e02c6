from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper

from payments.ids import PrefixedId


class Merchant(models.Model):
    """A business that takes payments through the platform; owns every other object."""

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("mer"), editable=False
    )
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(
        default=True, help_text="A disabled merchant's keys are refused with 403."
    )
    default_provider = models.CharField(max_length=20, default="sandbox")
    # Fiscal receipts (54-FZ), registered through YooKassa with each payment when enabled.
    receipts_enabled = models.BooleanField(default=False)
    receipt_vat_code = models.PositiveSmallIntegerField(
        default=1, help_text="YooKassa vat_code: 1 no VAT, 2 0%, 3 10%, 4 20%, 5 10/110, 6 20/120."
    )
    receipt_payment_subject = models.CharField(max_length=40, default="service")
    receipt_payment_mode = models.CharField(max_length=40, default="full_payment")
    receipt_tax_system_code = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class APIKey(models.Model):
    """
    A credential a client app presents as `Authorization: Bearer <key>`.

    Only a SHA-256 digest of the key is stored: the full key is shown once, when it is
    made. Keys carry about 190 random bits, so a fast hash is enough (as with GitHub
    tokens); there is nothing to brute-force that a slow hash would protect.
    """

    class Kind(models.TextChoices):
        SECRET = "secret", "Secret"
        PUBLISHABLE = "publishable", "Publishable"

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("key"), editable=False
    )
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    livemode = models.BooleanField(default=False)
    name = models.CharField(max_length=100, blank=True)
    # The first characters of the key (`sk_test_AbCd`), enough to recognise it in a list.
    prefix = models.CharField(max_length=24, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["merchant", "-created_at"], name="apikey_merchant_created")]

    def __str__(self):
        return f"{self.prefix}… ({self.get_kind_display()}, {self.merchant_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_secret(self) -> bool:
        return self.kind == self.Kind.SECRET


class Customer(models.Model):
    """A buyer, as the merchant's own app knows them (`external_id` is the app's user id)."""

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("cus"), editable=False
    )
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="customers")
    external_id = models.CharField(max_length=255)
    email = models.EmailField(blank=True)
    name = models.CharField(max_length=255, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "external_id"], name="customer_unique_external_id"
            ),
        ]
        indexes = [
            # The cursor-paginated list walks (merchant, id); email lookups are filters on it.
            models.Index(fields=["merchant", "-id"], name="customer_merchant_id"),
            models.Index(
                fields=["merchant", "email"], name="customer_merchant_email", condition=~Q(email="")
            ),
            # Staff search payments by a customer's email, in any case (admin search).
            models.Index(Upper("email"), name="customer_email_upper"),
        ]

    def __str__(self):
        return self.email or self.external_id


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    REQUIRES_CAPTURE = "requires_capture", "Requires capture"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"


# A payment "holds" its order id unless it ended without taking money.
ORDER_HOLDING_STATUSES = [
    PaymentStatus.PENDING,
    PaymentStatus.REQUIRES_CAPTURE,
    PaymentStatus.SUCCEEDED,
    PaymentStatus.PARTIALLY_REFUNDED,
    PaymentStatus.REFUNDED,
]


class Payment(models.Model):
    """
    One attempt to take an amount from a buyer. `status` changes only through
    `payments.services.payment_transition`, under a row lock, with a timeline event.
    """

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("pay"), editable=False
    )
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="payments")
    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="payments"
    )
    livemode = models.BooleanField(default=False)
    # Major units; the currency's exponent bounds the decimals (validated in payments.money).
    amount = models.DecimalField(max_digits=19, decimal_places=4)
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    capture = models.BooleanField(default=True, help_text="False: authorize now, capture later.")
    amount_captured = models.DecimalField(max_digits=19, decimal_places=4, default=Decimal(0))
    amount_refunded = models.DecimalField(max_digits=19, decimal_places=4, default=Decimal(0))

    provider = models.CharField(max_length=20)
    provider_payment_id = models.CharField(max_length=255, blank=True)
    provider_checkout_id = models.CharField(max_length=255, blank=True)
    provider_checkout_url = models.URLField(max_length=2000, blank=True)
    provider_payment_method_id = models.CharField(max_length=255, blank=True)
    provider_customer_id = models.CharField(max_length=255, blank=True)
    payment_method_types = models.JSONField(default=list, blank=True)
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)

    description = models.CharField(max_length=1000, blank=True)
    order_id = models.CharField(max_length=255, blank=True)
    reference = models.CharField(max_length=255, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    return_url = models.URLField(max_length=2000, blank=True)
    # What was bought: [{"description", "quantity", "unit_amount", "amount"}], summing to
    # `amount`. Invoices and fiscal receipts list these; empty means one line for it all.
    line_items = models.JSONField(default=list, blank=True)
    # Ask the provider to keep the buyer's payment method for later charges (renewals).
    save_payment_method = models.BooleanField(default=False)
    # Charged without the buyer, on a saved method (`provider_payment_method_id`): no
    # checkout page, the provider answers the charge directly.
    off_session = models.BooleanField(default=False)

    failure_code = models.CharField(max_length=100, blank=True)
    failure_message = models.CharField(max_length=1000, blank=True)

    # Work bookkeeping for the provider call (the sweep re-dispatches lost tasks).
    dispatch_attempts = models.PositiveIntegerField(default=0)
    last_dispatched_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("refund_payment", "Can refund payments, up to the support refund limit"),
            ("refund_payment_unlimited", "Can refund payments above the support refund limit"),
            ("cancel_payment", "Can cancel payments"),
            ("capture_payment", "Can capture payments"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "order_id"],
                condition=Q(status__in=ORDER_HOLDING_STATUSES) & ~Q(order_id=""),
                name="payment_one_live_payment_per_order",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            # Money bounds, enforced by the database whatever the code does: nothing is
            # captured beyond the amount, nothing refunded beyond what was captured.
            models.CheckConstraint(
                condition=Q(amount_captured__gte=0) & Q(amount_captured__lte=models.F("amount")),
                name="payment_captured_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0)
                & Q(amount_refunded__lte=models.F("amount_captured")),
                name="payment_refunded_within_captured",
            ),
        ]
        indexes = [
            # Lists are cursor-paginated on id within a merchant, optionally narrowed.
            models.Index(fields=["merchant", "-id"], name="payment_merchant_id"),
            models.Index(fields=["merchant", "status", "-id"], name="payment_merchant_status_id"),
            models.Index(
                fields=["merchant", "provider", "-id"], name="payment_merchant_provider_id"
            ),
            models.Index(fields=["customer", "-id"], name="payment_customer_id"),
            # Staff filter the list across merchants by status, provider and currency.
            models.Index(fields=["status", "-id"], name="payment_status_id"),
            models.Index(fields=["provider", "currency", "-id"], name="payment_provider_currency"),
            # Order ids and references are looked up across merchants by staff (admin
            # search); within a merchant the unique constraint's index serves.
            models.Index(
                fields=["order_id"], name="payment_order_id", condition=~Q(order_id=""),
            ),
            models.Index(
                fields=["reference"], name="payment_reference", condition=~Q(reference=""),
            ),
            # Webhooks find payments by the provider's ids.
            models.Index(
                fields=["provider", "provider_payment_id"], name="payment_provider_payment",
                condition=~Q(provider_payment_id=""),
            ),
            models.Index(
                fields=["provider", "provider_checkout_id"], name="payment_provider_checkout",
                condition=~Q(provider_checkout_id=""),
            ),
            # The dashboard sums finished payments by day: an index-only scan of the period
            # (covering index on PostgreSQL; elsewhere a plain one).
            models.Index(
                fields=["completed_at"],
                include=["livemode", "currency", "status", "amount_captured"],
                condition=Q(completed_at__isnull=False),
                name="payment_completed",
            ),
            # The dispatch sweep looks only at pending payments still waiting for a checkout.
            models.Index(
                fields=["created_at"], name="payment_awaiting_checkout",
                condition=Q(status="pending", provider_checkout_url=""),
            ),
        ]  # fmt: skip

    def __str__(self):
        return self.id


class PaymentEvent(models.Model):
    """The timeline: one row for every step in a payment's life, with who caused it."""

    class Source(models.TextChoices):
        API = "api", "API"
        PROVIDER = "provider", "Provider webhook"
        ADMIN = "admin", "Admin user"
        TASK = "task", "Task"

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("pev"), editable=False
    )
    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=50)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    actor = models.CharField(max_length=255, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["payment", "id"], name="paymentevent_payment_id")]

    def __str__(self):
        return f"{self.payment_id} {self.type}"


class IdempotencyKey(models.Model):
    """
    A stored response for an `Idempotency-Key`, committed in the same transaction as the
    effect it describes: there is never a payment without its key or a key without it.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE)
    # Test and live keys are separate worlds: the same key string may be used in both.
    livemode = models.BooleanField(default=False)
    key = models.CharField(max_length=255)
    request_method = models.CharField(max_length=10)
    request_path = models.CharField(max_length=500)
    request_fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.BinaryField()
    response_content_type = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "livemode", "key"], name="idempotency_key_unique"
            ),
        ]

    def __str__(self):
        return f"{self.merchant_id}:{self.key}"


# --- The sandbox provider's own records ---------------------------------------------------
# The sandbox behaves like a remote provider: it keeps its own books (these tables), talks
# to the rest of the code only through its adapter and through signed webhooks, and can be
# reconciled against like any provider. Nothing here is our view of a payment.


class SandboxPaymentMethod(models.Model):
    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("sbx_pm"), editable=False
    )
    card_brand = models.CharField(max_length=20)
    card_last4 = models.CharField(max_length=4)
    # Test card 4000 0000 0000 0341: the first payment works, later off-session ones fail.
    declines_off_session = models.BooleanField(default=False)
    # Saved for off-session charges: paid with on a checkout that asked to keep it.
    reusable = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.card_brand} •••• {self.card_last4}"


class SandboxPayment(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open (awaiting the buyer)"
        REQUIRES_CONFIRMATION = "requires_confirmation", "Requires confirmation"
        REQUIRES_CAPTURE = "requires_capture", "Requires capture"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("sbx_pay"), editable=False
    )
    # The caller's idempotency key: the same key never opens a second payment.
    idempotency_key = models.CharField(max_length=255, unique=True, null=True, blank=True)
    reference = models.CharField(max_length=255, db_index=True)
    amount = models.DecimalField(max_digits=19, decimal_places=4)
    currency = models.CharField(max_length=3)
    manual_capture = models.BooleanField(default=False)
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.OPEN)
    amount_captured = models.DecimalField(max_digits=19, decimal_places=4, default=Decimal(0))
    amount_refunded = models.DecimalField(max_digits=19, decimal_places=4, default=Decimal(0))
    payment_method = models.ForeignKey(
        SandboxPaymentMethod, on_delete=models.PROTECT, null=True, blank=True
    )
    save_payment_method = models.BooleanField(default=False)
    off_session = models.BooleanField(default=False)
    failure_code = models.CharField(max_length=100, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    return_url = models.URLField(max_length=2000, blank=True)
    description = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.id


class SandboxEvent(models.Model):
    """A webhook the sandbox owes us; sent (and retried) by a Celery task."""

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("sbx_evt"), editable=False
    )
    type = models.CharField(max_length=60)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["created_at"], name="sandboxevent_undelivered",
                condition=Q(delivered_at__isnull=True),
            )
        ]  # fmt: skip

    def __str__(self):
        return f"{self.id} {self.type}"


class RefundStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


# Refunds that hold part of a payment's refundable amount.
REFUND_HOLDING_STATUSES = [RefundStatus.PENDING, RefundStatus.SUCCEEDED]


class Refund(models.Model):
    """
    Money going back to the buyer. Created pending under the payment's row lock (so the
    refunds of a payment can never add up to more than was captured), sent to the provider
    by a task, and settled by the provider's answer or webhook.
    """

    id = models.CharField(primary_key=True, max_length=40, default=PrefixedId("re"), editable=False)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="refunds")
    livemode = models.BooleanField(default=False)
    amount = models.DecimalField(max_digits=19, decimal_places=4)
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=10, choices=RefundStatus.choices, default=RefundStatus.PENDING
    )
    reason = models.CharField(max_length=500, blank=True)
    provider = models.CharField(max_length=20)
    provider_refund_id = models.CharField(max_length=255, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    source = models.CharField(max_length=10, choices=PaymentEvent.Source.choices)
    actor = models.CharField(max_length=255, blank=True)
    dispatch_attempts = models.PositiveIntegerField(default=0)
    last_dispatched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
        ]
        indexes = [
            models.Index(fields=["payment", "-id"], name="refund_payment_id"),
            models.Index(fields=["merchant", "-id"], name="refund_merchant_id"),
            models.Index(
                fields=["provider", "provider_refund_id"], name="refund_provider_refund",
                condition=~Q(provider_refund_id=""),
            ),
            models.Index(
                fields=["created_at"], name="refund_awaiting_provider",
                condition=Q(status="pending", provider_refund_id=""),
            ),
        ]  # fmt: skip

    def __str__(self):
        return self.id


class SandboxRefund(models.Model):
    """The sandbox provider's record of a refund."""

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("sbx_re"), editable=False
    )
    idempotency_key = models.CharField(max_length=255, unique=True)
    reference = models.CharField(max_length=255, blank=True)  # the caller's refund id
    payment = models.ForeignKey(SandboxPayment, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(max_digits=19, decimal_places=4)
    status = models.CharField(max_length=10, default="pending")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.id


class CustomerBalance(models.Model):
    """
    A customer's prepaid credit in one currency: the row payments with the `credits`
    provider lock and debit, so two spends can never overdraw it. The ledger (billing)
    books every change too, and `ledger_check` proves the two agree.
    """

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="balances")
    # Test-mode credit must never pay for live-mode payments: separate balances.
    livemode = models.BooleanField(default=False)
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(max_digits=19, decimal_places=4, default=Decimal(0))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "livemode", "currency"], name="balance_per_currency"
            ),
            # Never overdrawn, whatever the code does.
            models.CheckConstraint(condition=Q(amount__gte=0), name="balance_not_negative"),
        ]

    def __str__(self):
        return f"{self.customer_id} {self.amount} {self.currency}"


class CreditTransaction(models.Model):
    """One change to a customer's credit balance: a grant, a deduction, a spend, a return."""

    class Type(models.TextChoices):
        GRANT = "grant", "Grant"
        DEDUCT = "deduct", "Deduct"
        SPEND = "spend", "Spend (a payment)"
        REFUND = "refund", "Refund (credit returned)"

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("cbt"), editable=False
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="credit_transactions"
    )
    livemode = models.BooleanField(default=False)
    type = models.CharField(max_length=10, choices=Type.choices)
    amount = models.DecimalField(max_digits=19, decimal_places=4)  # always positive
    currency = models.CharField(max_length=3)
    description = models.CharField(max_length=500, blank=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True)
    refund = models.ForeignKey(Refund, on_delete=models.PROTECT, null=True, blank=True)
    balance_after = models.DecimalField(max_digits=19, decimal_places=4)
    source = models.CharField(max_length=10, choices=PaymentEvent.Source.choices)
    actor = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["customer", "-id"], name="credittx_customer_id")]

    def __str__(self):
        return f"{self.id} {self.type} {self.amount} {self.currency}"
