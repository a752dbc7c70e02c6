"""Read operations of billing. A customer token's reads are narrowed to its customer."""

from django.db.models import QuerySet

from billing.models import Invoice
from payments.models import Customer, Merchant
from payments.selectors import object_get_or_404


def invoice_list(
    *, merchant: Merchant, livemode: bool, customer: Customer | None = None
) -> QuerySet[Invoice]:
    invoices = Invoice.objects.filter(merchant=merchant, livemode=livemode)
    if customer is not None:
        invoices = invoices.filter(customer=customer)
    return invoices.select_related("customer").prefetch_related("lines", "credit_notes")


def invoice_get_for_merchant(
    *, merchant: Merchant, livemode: bool, invoice_id: str, customer: Customer | None = None
) -> Invoice:
    invoices = invoice_list(merchant=merchant, livemode=livemode, customer=customer)
    return object_get_or_404(invoices, "invoice", invoice_id)
