"""Output serializers of the billing API (it takes no input beyond query strings)."""

from django.conf import settings
from rest_framework import serializers

from billing.models import CreditNote, Invoice, InvoiceLine
from payments.fields import BlankAsNullField, MoneyField, ObjectTypeField


class InvoiceLineOutputSerializer(serializers.ModelSerializer):
    unit_amount = serializers.SerializerMethodField()
    amount = serializers.SerializerMethodField()
    plan = BlankAsNullField(source="plan_id")

    class Meta:
        model = InvoiceLine
        fields = [
            "description", "quantity", "unit_amount", "amount", "plan", "period_start",
            "period_end",
        ]  # fmt: skip
        read_only_fields = fields

    def get_unit_amount(self, line) -> str:
        return _amount(line.unit_amount, line.invoice.currency)

    def get_amount(self, line) -> str:
        return _amount(line.amount, line.invoice.currency)


class CreditNoteOutputSerializer(serializers.ModelSerializer):
    object = ObjectTypeField("credit_note")
    amount = MoneyField("amount")
    refund = serializers.CharField(source="refund_id")
    reason = BlankAsNullField()

    class Meta:
        model = CreditNote
        fields = ["id", "object", "number", "amount", "currency", "refund", "reason", "created_at"]
        read_only_fields = fields


class InvoiceOutputSerializer(serializers.ModelSerializer):
    object = ObjectTypeField("invoice")
    subtotal = MoneyField("subtotal")
    total = MoneyField("total")
    amount_paid = MoneyField("amount_paid")
    amount_credited = MoneyField("amount_credited")
    amount_due = MoneyField("amount_due")
    customer = serializers.CharField(source="customer_id", allow_null=True)
    customer_details = serializers.SerializerMethodField()
    payment = serializers.CharField(source="payment_id", allow_null=True)
    subscription = BlankAsNullField(source="subscription_id")
    description = BlankAsNullField()
    lines = InvoiceLineOutputSerializer(many=True)
    credit_notes = CreditNoteOutputSerializer(many=True)
    pdf_url = serializers.SerializerMethodField()

    class Meta:
        model = Invoice
        fields = [
            "id", "object", "number", "status", "billing_reason", "currency", "subtotal",
            "total", "amount_paid", "amount_credited", "amount_due", "customer",
            "customer_details", "merchant_details", "payment", "attempt_count", "subscription",
            "period_start", "period_end", "description", "lines", "credit_notes", "pdf_url",
            "livemode", "created_at", "finalized_at", "paid_at", "voided_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_customer_details(self, invoice) -> dict:
        """As issued; a draft shows the customer as they are now."""
        if invoice.customer_details or invoice.customer is None:
            return invoice.customer_details
        customer = invoice.customer
        return {"name": customer.name, "email": customer.email, "external_id": customer.external_id}

    def get_pdf_url(self, invoice) -> str:
        return f"{settings.PUBLIC_BASE_URL}/api/v1/invoices/{invoice.pk}/pdf"


def _amount(value, currency: str) -> str:
    from payments.money import amount_format

    return amount_format(value, currency)
