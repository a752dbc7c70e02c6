"""
The ledger: a double-entry, append-only record of every money movement.

Each `LedgerTransaction` books one outcome payments announced (a captured payment, a
refund, a credit grant or deduction) with entries that sum to zero per currency. Balances
and volumes are sums of entries, never stored totals, so they cannot drift from the record.

Rows are only ever inserted: a mistake is corrected by a new, reversing transaction, which
keeps the history an auditor (or `manage.py ledger_check`) reads intact. Code cannot
update or delete them (see `AppendOnly`), and the admin shows them read-only.
"""

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
