"""Query-string filters for list endpoints; bad values are a 400 naming the parameter."""

import django_filters
from django.db.models import QuerySet

from payments.errors import ValidationFailed
from payments.models import Customer


def filters_apply(filterset_class, data, queryset: QuerySet) -> QuerySet:
    filterset = filterset_class(data, queryset=queryset)
    if not filterset.is_valid():
        param, messages = next(iter(filterset.errors.items()))
        raise ValidationFailed(f"{param}: {messages[0]}", param=param)
    return filterset.qs


class CustomerFilter(django_filters.FilterSet):
    external_id = django_filters.CharFilter()
    email = django_filters.CharFilter(lookup_expr="iexact")
    created_gte = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_lte = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = Customer
        fields = ["external_id", "email"]
