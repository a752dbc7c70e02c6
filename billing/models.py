"""
The ledger: a double-entry, append-only record of every money movement.

Each `LedgerTransaction` books one outcome payments announced (a captured payment, a
refund, a credit grant or deduction) with entries that sum to zero per currency. Balances
and volumes are sums of entries, never stored totals, so they cannot drift from the record.

Rows are only ever inserted: a mistake is corrected by a new, reversing transaction, which
keeps the history an auditor (or `manage.py ledger_check`) reads intact. Code cannot
update or delete them (see `AppendOnly`), and the admin shows them read-only.
"""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from payments.ids import PrefixedId


class AppendOnlyError(Exception):
    """Something tried to change or remove a ledger row."""


class AppendOnlyQuerySet(models.QuerySet):
    # Bulk paths skip save()/delete(), so they are closed here too.
    def update(self, **kwargs):
        raise AppendOnlyError("Ledger rows are append-only: book a reversing transaction.")

    def delete(self):
        raise AppendOnlyError("Ledger rows are append-only: book a reversing transaction.")


class AppendOnly(models.Model):
    """Rows that can be inserted and never changed or removed from code."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{self._meta.label} {self.pk} is append-only.")
        # A fresh row with a default id must be an INSERT, never a silent UPDATE of a row
        # that happens to share its id.
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{self._meta.label} {self.pk} is append-only.")


class LedgerTransaction(AppendOnly):
    """One booked outcome: a balanced set of entries, written with the change it books."""

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("ltx"), editable=False
    )
    merchant = models.ForeignKey(
        "payments.Merchant", on_delete=models.PROTECT, related_name="ledger_transactions"
    )
    livemode = models.BooleanField(default=False)
    kind = models.CharField(max_length=50)  # the outcome type: "payment.succeeded", …
    reference = models.CharField(max_length=40)  # the outcome's object id: pay_…, re_…, cbt_…
    # The payment whose net this moves (a capture or one of its refunds), for per-payment
    # checks; blank for credit grants and deductions.
    payment_id = models.CharField(max_length=40, blank=True, null=True)
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # The same outcome is booked once, however often it is announced.
            models.UniqueConstraint(fields=["kind", "reference"], name="ledger_tx_once"),
        ]
        indexes = [
            models.Index(fields=["merchant", "-id"], name="ledger_tx_merchant_id"),
            models.Index(
                fields=["payment_id"],
                name="ledger_tx_payment",
                condition=Q(payment_id__isnull=False),
            ),
        ]

    def __str__(self):
        return f"{self.id} {self.kind} {self.reference}"


class LedgerEntry(AppendOnly):
    """
    One leg of a transaction on one account. Signed: a debit is positive, a credit
    negative, so a balanced transaction's entries sum to zero in each currency.

    Accounts: `provider_receivable:<provider>` (money a provider holds for us), `sales`
    (merchants' net volume, credit-normal), `customer_credit:<customer id>` (prepaid
    credit we owe a customer, credit-normal), `credits_issued` (credit granted, not paid).
    """

    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="entries"
    )
    account = models.CharField(max_length=80)
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(max_digits=19, decimal_places=4)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "ledger entries"
        indexes = [
            # Balances are sums over one account in one currency.
            models.Index(fields=["account", "currency"], name="ledger_entry_account"),
        ]

    def __str__(self):
        return f"{self.account} {self.amount} {self.currency}"


# --- Invoices ---------------------------------------------------------------------------------


class BillingProfile(models.Model):
    """The merchant's details printed on its invoices, and its invoice number prefixes."""

    merchant = models.OneToOneField(
        "payments.Merchant",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="billing_profile",
    )
    legal_name = models.CharField(max_length=255, blank=True)
    address = models.TextField(blank=True)
    tax_id = models.CharField(max_length=64, blank=True, help_text="INN, VAT number, …")
    email = models.EmailField(blank=True)
    # Live and test invoices are numbered apart, so test traffic never leaves gaps in the
    # live sequence an auditor reads.
    invoice_prefix = models.CharField(
        max_length=12,
        default="INV",
        validators=[RegexValidator(r"^[A-Z0-9]{1,12}$", "1 to 12 capital letters or digits.")],
    )
    test_invoice_prefix = models.CharField(
        max_length=12,
        default="TEST",
        validators=[RegexValidator(r"^[A-Z0-9]{1,12}$", "1 to 12 capital letters or digits.")],
    )
    footer = models.TextField(blank=True, help_text="Printed at the bottom of every invoice.")

    def __str__(self):
        return f"Billing profile of {self.merchant_id}"

    def clean(self):
        if self.invoice_prefix == self.test_invoice_prefix:
            raise ValidationError({"test_invoice_prefix": "Must differ from the live prefix."})


class InvoiceSequence(models.Model):
    """
    The last number given to an invoice, per merchant, mode and year. Taken under this
    row's lock in the transaction that finalizes the invoice: a rolled-back finalization
    gives its number back, so the numbers have no gaps and no repeats.
    """

    merchant = models.ForeignKey("payments.Merchant", on_delete=models.CASCADE)
    livemode = models.BooleanField(default=False)
    year = models.PositiveSmallIntegerField()
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "livemode", "year"], name="invoice_sequence_unique"
            )
        ]

    def __str__(self):
        return f"{self.merchant_id} {self.year}: {self.last_number}"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    OPEN = "open", "Open"
    PAID = "paid", "Paid"
    VOID = "void", "Void"


class BillingReason(models.TextChoices):
    PAYMENT = "payment", "A one-off payment"
    SUBSCRIPTION_CREATE = "subscription_create", "A subscription's first payment"
    SUBSCRIPTION_CYCLE = "subscription_cycle", "A subscription renewal"


class Invoice(models.Model):
    """
    A numbered bill for what a customer paid or owes. A draft has no number; it gets the
    next one of its merchant when finalized (`open`) or paid. The customer's and
    merchant's details are copied in at finalization: an issued invoice never changes
    when a customer later edits their email.
    """

    id = models.CharField(primary_key=True, max_length=40, default=PrefixedId("in"), editable=False)
    merchant = models.ForeignKey(
        "payments.Merchant", on_delete=models.PROTECT, related_name="invoices"
    )
    livemode = models.BooleanField(default=False)
    customer = models.ForeignKey(
        "payments.Customer",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="invoices",
    )
    number = models.CharField(max_length=40, null=True, blank=True, editable=False)
    status = models.CharField(
        max_length=10, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    billing_reason = models.CharField(
        max_length=30, choices=BillingReason.choices, default=BillingReason.PAYMENT
    )
    currency = models.CharField(max_length=3)
    subtotal = models.DecimalField(max_digits=19, decimal_places=4)
    total = models.DecimalField(max_digits=19, decimal_places=4)
    amount_paid = models.DecimalField(max_digits=19, decimal_places=4, default=Decimal(0))
    amount_credited = models.DecimalField(max_digits=19, decimal_places=4, default=Decimal(0))
    # The payment that paid it, or the latest attempt to (renewals retry with new ones).
    payment = models.ForeignKey(
        "payments.Payment", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    attempt_count = models.PositiveSmallIntegerField(default=0)
    # The subscription it bills (an id: billing does not depend on subscriptions).
    subscription_id = models.CharField(max_length=40, blank=True, db_index=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=1000, blank=True)
    customer_details = models.JSONField(default=dict, blank=True)
    merchant_details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "livemode", "number"],
                condition=Q(number__isnull=False),
                name="invoice_number_unique",
            ),
            # One renewal invoice per subscription period, however often the renewal
            # job runs: the database's answer to "never charged twice for one period".
            models.UniqueConstraint(
                fields=["subscription_id", "period_start"],
                condition=Q(billing_reason="subscription_cycle"),
                name="invoice_one_per_subscription_period",
            ),
            models.UniqueConstraint(
                fields=["subscription_id"],
                condition=Q(billing_reason="subscription_create"),
                name="invoice_one_first_per_subscription",
            ),
            models.CheckConstraint(
                condition=Q(number__isnull=True) | ~Q(status="draft"),
                name="invoice_draft_has_no_number",
            ),
            models.CheckConstraint(
                condition=Q(amount_paid__gte=0) & Q(amount_paid__lte=models.F("total")),
                name="invoice_paid_within_total",
            ),
            models.CheckConstraint(
                condition=Q(amount_credited__gte=0)
                & Q(amount_credited__lte=models.F("amount_paid")),
                name="invoice_credited_within_paid",
            ),
        ]
        indexes = [
            models.Index(fields=["merchant", "livemode", "-id"], name="invoice_merchant_id"),
            models.Index(
                fields=["merchant", "livemode", "status", "-id"], name="invoice_merchant_status"
            ),
            models.Index(fields=["customer", "-id"], name="invoice_customer_id"),
            models.Index(fields=["payment"], name="invoice_payment"),
        ]

    def __str__(self):
        return self.number or self.id

    @property
    def amount_due(self) -> Decimal:
        return Decimal(0) if self.status in ("paid", "void") else self.total - self.amount_paid


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    description = models.CharField(max_length=500)
    quantity = models.PositiveIntegerField(default=1)
    unit_amount = models.DecimalField(max_digits=19, decimal_places=4)
    amount = models.DecimalField(max_digits=19, decimal_places=4)
    plan_id = models.CharField(max_length=40, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.description


class CreditNote(models.Model):
    """A refund of (part of) a paid invoice, numbered after it: `INV-2026-000042-CN1`."""

    id = models.CharField(primary_key=True, max_length=40, default=PrefixedId("cn"), editable=False)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=50)
    # One note per refund, however often the refund's outcome is announced.
    refund_id = models.CharField(max_length=40, unique=True)
    amount = models.DecimalField(max_digits=19, decimal_places=4)
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "number"], name="credit_note_number_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_note_amount_positive"),
        ]

    def __str__(self):
        return self.number


# --- Reconciliation ---------------------------------------------------------------------------


class ReconciliationRun(models.Model):
    """
    One comparison of our payments and refunds with a provider's records over a time
    range, from its list API or from a settlement report (CSV). Started from the admin,
    the `reconcile` command or the nightly beat; executed by `billing.reconciliation`.
    """

    class Source(models.TextChoices):
        API = "api", "Provider API"
        REPORT = "report", "Settlement report (CSV)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("rcr"), editable=False
    )
    provider = models.CharField(max_length=20)
    since = models.DateTimeField(help_text="Payments made at or after this time…")
    until = models.DateTimeField(help_text="…and before this one.")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    report_name = models.CharField(max_length=255, blank=True)
    # An uploaded report, kept for the worker (any machine) and as the record of what the
    # provider stated; the command reads its file directly and stores none.
    report = models.BinaryField(null=True, blank=True, editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # Progress: provider records read (of `records_total` when known: reports), our
    # payments and refunds checked for a provider record, mismatches stored.
    records_seen = models.PositiveBigIntegerField(default=0)
    records_total = models.PositiveBigIntegerField(null=True, blank=True)
    ours_checked = models.PositiveBigIntegerField(default=0)
    mismatches_found = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty for the nightly run.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Bumped with every progress write: a running run that stops moving was orphaned by
    # its worker and may be started over.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("run_reconciliation", "Can run reconciliation"),
            ("resolve_mismatch", "Can resolve reconciliation mismatches"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(since__lt=models.F("until")), name="recon_run_range"
            ),
        ]
        indexes = [models.Index(fields=["provider", "-id"], name="recon_run_provider")]

    def __str__(self):
        return f"{self.id} {self.provider} {self.since:%Y-%m-%d %H:%M}–{self.until:%Y-%m-%d %H:%M}"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


class ReconciliationMismatch(models.Model):
    """
    One disagreement a run found between our books and the provider's, with both sides'
    values as they were, and what staff did about it.
    """

    class Kind(models.TextChoices):
        MISSING_HERE = "missing_here", "Missing here"
        MISSING_AT_PROVIDER = "missing_at_provider", "Missing at the provider"
        STATUS_DIFFERS = "status_differs", "Status differs"
        AMOUNT_DIFFERS = "amount_differs", "Amount or currency differs"
        REFUND_DIFFERS = "refund_differs", "Refund differs"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        FIXED_FROM_PROVIDER = "fixed_from_provider", "Fixed from the provider's state"
        RESOLVED = "resolved", "Resolved (with a comment)"

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("rcm"), editable=False
    )
    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="mismatches")
    provider = models.CharField(max_length=20)  # the run's, for the filters
    kind = models.CharField(max_length=20, choices=Kind.choices)
    payment = models.ForeignKey(
        "payments.Payment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reconciliation_mismatches",
    )
    refund = models.ForeignKey(
        "payments.Refund",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reconciliation_mismatches",
    )
    # The provider's record, as it named itself (all that identifies a "missing here").
    provider_payment_id = models.CharField(max_length=255, blank=True)
    provider_refund_id = models.CharField(max_length=255, blank=True)
    reference = models.CharField(max_length=255, blank=True)
    summary = models.CharField(max_length=500)
    ours = models.JSONField(null=True, blank=True)  # our values then; null: we have none
    theirs = models.JSONField(null=True, blank=True)  # the provider's; null: it has none
    state = models.CharField(max_length=20, choices=State.choices, default=State.OPEN)
    resolution = models.TextField(blank=True, help_text="What was done, or staff's comment.")
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "reconciliation mismatches"
        indexes = [
            # The admin's filters: a run's mismatches by kind and state; open ones anywhere.
            models.Index(fields=["run", "state", "kind"], name="recon_mm_run_state_kind"),
            models.Index(fields=["state", "provider", "kind"], name="recon_mm_state_provider"),
        ]

    def __str__(self):
        return f"{self.id} {self.kind}"
