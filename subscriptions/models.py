"""Plans a merchant sells, and the subscriptions customers hold to them."""

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from payments.ids import PrefixedId


class Interval(models.TextChoices):
    DAY = "day", "Day"
    WEEK = "week", "Week"
    MONTH = "month", "Month"
    YEAR = "year", "Year"


class Plan(models.Model):
    """What a subscription costs and how often: "premium, 599.00 RUB every month"."""

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("plan"), editable=False
    )
    merchant = models.ForeignKey(
        "payments.Merchant", on_delete=models.PROTECT, related_name="plans"
    )
    code = models.CharField(
        max_length=64,
        validators=[
            RegexValidator(r"^[a-z0-9][a-z0-9_-]*$", "Lowercase letters, digits, - and _.")
        ],
        help_text="The merchant's own name for the plan, unique per merchant: basic, premium…",
    )
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=1000, blank=True)
    amount = models.DecimalField(max_digits=19, decimal_places=4)
    currency = models.CharField(max_length=3)
    interval = models.CharField(max_length=5, choices=Interval.choices, default=Interval.MONTH)
    interval_count = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(365)]
    )
    trial_days = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(730)], help_text="0: no trial."
    )
    active = models.BooleanField(
        default=True, help_text="Inactive plans are not sold; their subscriptions go on."
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "code"], name="plan_code_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="plan_amount_positive"),
            models.CheckConstraint(
                condition=Q(interval_count__gte=1), name="plan_interval_count_positive"
            ),
        ]
        indexes = [models.Index(fields=["merchant", "active", "-id"], name="plan_merchant_active")]

    def __str__(self):
        return f"{self.name} ({self.code})"


class SubscriptionStatus(models.TextChoices):
    INCOMPLETE = "incomplete", "Incomplete (first payment pending)"
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due (renewal failed, retrying)"
    CANCELED = "canceled", "Canceled"
    EXPIRED = "expired", "Expired (first payment never made)"


# Subscriptions the renewal job looks after.
RUNNING_STATUSES = [
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.PAST_DUE,
]
ENDED_STATUSES = [SubscriptionStatus.CANCELED, SubscriptionStatus.EXPIRED]


class Subscription(models.Model):
    """
    A customer's standing order for a plan. `status` changes only through
    `subscriptions.services`, under this row's lock.

    Periods are counted from `cycle_anchor`: period k runs from anchor + k intervals to
    anchor + (k + 1) intervals, so month ends do not drift (31 Jan, 28 Feb, 31 Mar).
    A trial is period -1, ending at the anchor.
    """

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("sub"), editable=False
    )
    merchant = models.ForeignKey(
        "payments.Merchant", on_delete=models.PROTECT, related_name="subscriptions"
    )
    livemode = models.BooleanField(default=False)
    customer = models.ForeignKey(
        "payments.Customer", on_delete=models.PROTECT, related_name="subscriptions"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    provider = models.CharField(max_length=20)
    status = models.CharField(
        max_length=12, choices=SubscriptionStatus.choices, default=SubscriptionStatus.INCOMPLETE
    )
    cycle_anchor = models.DateTimeField(null=True, blank=True)
    period_index = models.IntegerField(default=0)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    trial_start = models.DateTimeField(null=True, blank=True)
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    cancellation_reason = models.CharField(max_length=40, blank=True)
    # The saved method renewals charge (from the first payment, where the provider keeps it).
    payment_method_id = models.CharField(max_length=255, blank=True)
    provider_customer_id = models.CharField(max_length=255, blank=True)
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    latest_invoice = models.ForeignKey(
        "billing.Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # When the renewal job next acts: charge, retry, end at period end, or expire an
    # incomplete one. Null while an attempt is in flight, and once it has ended.
    next_action_at = models.DateTimeField(null=True, blank=True)
    # Failed attempts to pay the current renewal (the dunning step reached).
    renewal_failures = models.PositiveSmallIntegerField(default=0)
    past_due_since = models.DateTimeField(null=True, blank=True)
    return_url = models.URLField(max_length=2000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["merchant", "livemode", "-id"], name="subscription_merchant_id"),
            models.Index(
                fields=["merchant", "livemode", "status", "-id"], name="subscription_status_id"
            ),
            models.Index(fields=["customer", "-id"], name="subscription_customer_id"),
            # The renewal job reads only subscriptions with something due.
            models.Index(
                fields=["next_action_at"],
                name="subscription_due",
                condition=Q(next_action_at__isnull=False),
            ),
        ]

    def __str__(self):
        return self.id

    @property
    def amount(self) -> Decimal:
        return self.plan.amount
