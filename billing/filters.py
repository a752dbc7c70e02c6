"""Query-string filters of the billing lists."""

import django_filters

from billing.models import Invoice, InvoiceStatus
from payments.filters import CreatedRangeFilterSet


class InvoiceFilter(CreatedRangeFilterSet):
    id_prefix = "in"
    status = django_filters.MultipleChoiceFilter(choices=InvoiceStatus.choices)
    customer = django_filters.CharFilter(field_name="customer_id")
    subscription = django_filters.CharFilter(field_name="subscription_id")
    payment = django_filters.CharFilter(field_name="payment_id")
    number = django_filters.CharFilter()

    class Meta:
        model = Invoice
        fields = ["status", "customer", "subscription", "payment", "number"]
