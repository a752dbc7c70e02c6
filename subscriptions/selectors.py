"""Read operations of subscriptions. A customer token's reads are narrowed to its customer."""

from django.db.models import QuerySet

from payments.errors import ValidationFailed
from payments.models import Customer, Merchant
from payments.selectors import object_get_or_404
from subscriptions.models import Plan, Subscription


def plan_list(*, merchant: Merchant, active_only: bool = True) -> QuerySet[Plan]:
    plans = Plan.objects.filter(merchant=merchant)
    return plans.filter(active=True) if active_only else plans


def plan_get_for_merchant(*, merchant: Merchant, plan: str) -> Plan:
    """A plan by id (`plan_…`) or by its code."""
    field = "pk" if plan.startswith("plan_") else "code"
    found = (
        None if "\x00" in plan else Plan.objects.filter(merchant=merchant, **{field: plan}).first()
    )
    if found is None:
        raise ValidationFailed(f"No such plan: '{plan}'.", param="plan")
    return found


def subscription_list(
    *, merchant: Merchant, livemode: bool, customer: Customer | None = None
) -> QuerySet[Subscription]:
    subscriptions = Subscription.objects.filter(merchant=merchant, livemode=livemode)
    if customer is not None:
        subscriptions = subscriptions.filter(customer=customer)
    return subscriptions.select_related("plan", "latest_invoice__payment")


def subscription_get_for_merchant(
    *, merchant: Merchant, livemode: bool, subscription_id: str, customer: Customer | None = None
) -> Subscription:
    subscriptions = subscription_list(merchant=merchant, livemode=livemode, customer=customer)
    return object_get_or_404(subscriptions, "subscription", subscription_id)
