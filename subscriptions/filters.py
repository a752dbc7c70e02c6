"""Query-string filters of the subscriptions list."""

import django_filters

from payments.filters import CreatedRangeFilterSet
from subscriptions.models import Subscription, SubscriptionStatus


class SubscriptionFilter(CreatedRangeFilterSet):
    id_prefix = "sub"
    status = django_filters.MultipleChoiceFilter(choices=SubscriptionStatus.choices)
    customer = django_filters.CharFilter(field_name="customer_id")
    plan = django_filters.CharFilter(method="filter_plan")

    class Meta:
        model = Subscription
        fields = ["status", "customer", "plan"]

    def filter_plan(self, queryset, name, value):
        field = "plan_id" if value.startswith("plan_") else "plan__code"
        return queryset.filter(**{field: value})
