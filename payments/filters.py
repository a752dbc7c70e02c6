"""Query-string filters for list endpoints; bad values are a 400 naming the parameter."""

from datetime import timedelta

import django_filters
from django.db.models import QuerySet

from payments.errors import ValidationFailed
from payments.ids import ulid_floor
from payments.models import Customer, Payment, PaymentStatus, Refund


def filters_apply(filterset_class, data, queryset: QuerySet) -> QuerySet:
    filterset = filterset_class(data, queryset=queryset)
    if not filterset.is_valid():
        param, messages = next(iter(filterset.errors.items()))
        raise ValidationFailed(f"{param}: {messages[0]}", param=param)
    return filterset.qs


class CreatedRangeFilterSet(django_filters.FilterSet):
    """
    `created_gte` / `created_lte` as a range on the id: ids are ULIDs that begin with the
    creation time, so the range rides the same (merchant, id) index as the pagination
    instead of scanning rows to compare timestamps.
    """

    id_prefix = ""
    created_gte = django_filters.IsoDateTimeFilter(method="filter_created_gte")
    created_lte = django_filters.IsoDateTimeFilter(method="filter_created_lte")

    def filter_created_gte(self, queryset, name, value):
        return queryset.filter(pk__gte=f"{self.id_prefix}_{ulid_floor(value)}")

    def filter_created_lte(self, queryset, name, value):
        try:
            after = value + timedelta(milliseconds=1)
        except OverflowError:
            # The last representable moment: nothing was created after it.
            return queryset
        return queryset.filter(pk__lt=f"{self.id_prefix}_{ulid_floor(after)}")


class CustomerFilter(CreatedRangeFilterSet):
    id_prefix = "cus"
    external_id = django_filters.CharFilter()
    email = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = Customer
        fields = ["external_id", "email"]


class PaymentFilter(CreatedRangeFilterSet):
    id_prefix = "pay"
    status = django_filters.MultipleChoiceFilter(choices=PaymentStatus.choices)
    provider = django_filters.CharFilter()
    customer = django_filters.CharFilter(field_name="customer_id")
    order_id = django_filters.CharFilter()
    reference = django_filters.CharFilter()

    class Meta:
        model = Payment
        fields = ["status", "provider", "customer", "order_id", "reference"]


class RefundFilter(CreatedRangeFilterSet):
    id_prefix = "re"

    class Meta:
        model = Refund
        fields = []
