"""
Reads for the staff dashboard on the admin index: money per day and currency over the
last days, and the counts that need someone's attention (failed inbox rows, failing
callbacks, disabled endpoints, open reconciliation mismatches).

Everything is aggregated by the database in a fixed number of queries, whatever the
number of rows: one for payments by completion day, one for payments by creation day,
one for refunds, one per count. Days are UTC calendar days.
"""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.apps import apps
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing import charts
from payments.ids import ulid_floor
from payments.models import Payment, PaymentStatus, Refund, RefundStatus
from payments.money import amount_format
from webhooks.models import Delivery, InboundWebhook, WebhookEndpoint

# A payment "succeeded" for the dashboard if it took money, whatever was refunded later.
SUCCEEDED_STATUSES = [
    PaymentStatus.SUCCEEDED,
    PaymentStatus.PARTIALLY_REFUNDED,
    PaymentStatus.REFUNDED,
]
UNSUCCESSFUL_STATUSES = [PaymentStatus.FAILED, PaymentStatus.CANCELED]

# The counts the dashboard knows, each with the model permission needed to see it.
COUNTS = {
    "webhooks_failed": "webhooks.view_inboundwebhook",
    "deliveries_retrying": "webhooks.view_delivery",
    "deliveries_failed": "webhooks.view_delivery",
    "endpoints_disabled": "webhooks.view_webhookendpoint",
    "mismatches_open": "billing.view_reconciliationmismatch",
}

# A mismatch still to be looked at (ReconciliationMismatch.State.OPEN).
MISMATCH_OPEN_STATE = "open"

CHART_CURRENCIES = 3
_PERCENT = Decimal("0.1")


def dashboard_period(*, now: datetime | None = None, days: int = 30) -> tuple[datetime, datetime]:
    """The `[start, end)` of the last `days` UTC calendar days, today included."""
    today = (now or timezone.now()).astimezone(UTC).date()
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)
    return end - timedelta(days=days), end


def dashboard_data(
    *,
    now: datetime | None = None,
    days: int = 30,
    money: bool = True,
    counts: frozenset[str] | set[str] | None = None,
) -> dict:
    """
    The dashboard's numbers: `series` (one per currency and mode, live first, then by
    revenue) with per-day revenue, refunds, net, payments created, succeeded, failed and
    success rate, and period totals; and `counts` (`None` for a count that cannot be
    computed, such as mismatches before reconciliation exists).

    `money=False` skips the payment queries; `counts` names the counts wanted (all when
    None), so a caller can leave out what its user may not see.
    """
    start, end = dashboard_period(now=now, days=days)
    day_list = [start.date() + timedelta(days=offset) for offset in range(days)]
    wanted = set(COUNTS) if counts is None else set(counts) & set(COUNTS)
    return {
        "start": day_list[0],
        "end": day_list[-1],
        "days": day_list,
        "series": _money_series(start, end, day_list) if money else [],
        "counts": {name: _COUNTERS[name](start) for name in COUNTS if name in wanted},
    }


# --- Money ------------------------------------------------------------------------------


def _money_series(start: datetime, end: datetime, day_list: list[date]) -> list[dict]:
    rows: dict[tuple[bool, str], dict[date, dict]] = {}

    def cell(livemode: bool, currency: str, day: date) -> dict:
        return rows.setdefault((livemode, currency), {}).setdefault(day, _empty_day())

    # Outcomes by the day the payment completed (succeeded, failed or was canceled; a later
    # refund does not move it). Without an index on completed_at this reads every payment
    # (a parallel sequential scan, ~0.3 s at a million rows); a partial index on
    # completed_at INCLUDE (livemode, currency, status, amount_captured) makes it an
    # index-only scan of the period. Count("status"), not Count("pk"), keeps it index-only.
    completed = (
        Payment.objects.filter(completed_at__gte=start, completed_at__lt=end)
        .annotate(day=TruncDate("completed_at", tzinfo=UTC))
        .values("livemode", "currency", "day")
        .annotate(
            revenue=Sum("amount_captured", filter=Q(status__in=SUCCEEDED_STATUSES)),
            succeeded=Count("status", filter=Q(status__in=SUCCEEDED_STATUSES)),
            unsuccessful=Count("status", filter=Q(status__in=UNSUCCESSFUL_STATUSES)),
        )
        .order_by()
    )
    for row in completed:
        target = cell(row["livemode"], row["currency"], row["day"])
        target["revenue"] += row["revenue"] or Decimal(0)
        target["succeeded"] += row["succeeded"]
        target["unsuccessful"] += row["unsuccessful"]

    # Ids are ULIDs minted at creation, so the creation window is also a primary-key range:
    # an index range scan instead of reading every payment (there is no created_at index).
    created = (
        Payment.objects.filter(
            pk__gte=f"pay_{ulid_floor(start)}",
            pk__lt=f"pay_{ulid_floor(end)}",
            created_at__gte=start,
            created_at__lt=end,
        )
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("livemode", "currency", "day")
        .annotate(created=Count("*"))
        .order_by()
    )
    for row in created:
        cell(row["livemode"], row["currency"], row["day"])["created"] += row["created"]

    refunds = (
        Refund.objects.filter(
            status=RefundStatus.SUCCEEDED, completed_at__gte=start, completed_at__lt=end
        )
        .annotate(day=TruncDate("completed_at", tzinfo=UTC))
        .values("livemode", "currency", "day")
        .annotate(refunded=Sum("amount"))
        .order_by()
    )
    for row in refunds:
        cell(row["livemode"], row["currency"], row["day"])["refunded"] += row["refunded"]

    series = [
        _series(livemode, currency, by_day, day_list)
        for (livemode, currency), by_day in rows.items()
    ]
    series.sort(key=lambda item: (not item["livemode"], -item["totals"]["revenue"], item["key"]))
    return series


def _empty_day() -> dict:
    return {
        "revenue": Decimal(0),
        "refunded": Decimal(0),
        "created": 0,
        "succeeded": 0,
        "unsuccessful": 0,
    }


def _series(livemode: bool, currency: str, by_day: dict[date, dict], day_list) -> dict:
    points = []
    for day in day_list:
        points.append(_point(day, **(by_day.get(day) or _empty_day())))
    totals = _point(
        None,
        revenue=sum((point["revenue"] for point in points), Decimal(0)),
        refunded=sum((point["refunded"] for point in points), Decimal(0)),
        created=sum(point["created"] for point in points),
        succeeded=sum(point["succeeded"] for point in points),
        unsuccessful=sum(point["unsuccessful"] for point in points),
    )
    return {
        "key": f"{currency}{'' if livemode else '-test'}",
        "currency": currency,
        "livemode": livemode,
        "days": points,
        "totals": totals,
    }


def _point(day, *, revenue, refunded, created, succeeded, unsuccessful) -> dict:
    return {
        "day": day,
        "revenue": revenue,
        "refunded": refunded,
        "net": revenue - refunded,
        "created": created,
        "succeeded": succeeded,
        "unsuccessful": unsuccessful,
        "success_rate": success_rate(succeeded, unsuccessful),
    }


def success_rate(succeeded: int, unsuccessful: int) -> Decimal | None:
    """Succeeded out of all that ended, in percent to one decimal; None when none ended."""
    ended = succeeded + unsuccessful
    if not ended:
        return None
    return (Decimal(succeeded) * 100 / ended).quantize(_PERCENT)


# --- Counts -----------------------------------------------------------------------------


def _webhooks_failed(start: datetime) -> int:
    # Whatever their age: a failed inbox row waits for a reprocess. Index-only on
    # (status, received_at).
    return InboundWebhook.objects.filter(status=InboundWebhook.Status.FAILED).count()


def _deliveries_retrying(start: datetime) -> int:
    # Pending after at least one attempt: the last attempt failed and a retry is scheduled.
    # The partial index `delivery_due` holds only pending rows.
    return Delivery.objects.filter(status=Delivery.Status.PENDING, attempts__gte=1).count()


def _deliveries_failed(start: datetime) -> int:
    # Given up on, for callbacks of the period (the primary key is time-ordered: a range).
    return Delivery.objects.filter(
        pk__gte=f"dlv_{ulid_floor(start)}", status=Delivery.Status.FAILED
    ).count()


def _endpoints_disabled(start: datetime) -> int:
    return WebhookEndpoint.objects.filter(disabled=True).count()


def mismatch_model():
    """The reconciliation mismatch model, or None where reconciliation is not installed."""
    try:
        return apps.get_model("billing", "ReconciliationMismatch")
    except LookupError:
        return None


def _mismatches_open(start: datetime) -> int | None:
    # Index-only on (state, provider, kind).
    model = mismatch_model()
    if model is None:
        return None
    return model.objects.filter(state=MISMATCH_OPEN_STATE).count()


_COUNTERS = {
    "webhooks_failed": _webhooks_failed,
    "deliveries_retrying": _deliveries_retrying,
    "deliveries_failed": _deliveries_failed,
    "endpoints_disabled": _endpoints_disabled,
    "mismatches_open": _mismatches_open,
}


def amount_display(amount: Decimal, currency: str) -> str:
    """
    `amount_format`'s exact amount with its thousands set apart by narrow no-break spaces
    (`6 751 789.00`), for reading, not for copying into a form.
    """
    text = amount_format(amount, currency)
    sign = "-" if text.startswith("-") else ""
    whole, dot, fraction = text.lstrip("-").partition(".")
    groups = []
    while len(whole) > 3:
        whole, group = whole[:-3], whole[-3:]
        groups.insert(0, group)
    return sign + "\u202f".join([whole, *groups]) + dot + fraction


# --- Charts -----------------------------------------------------------------------------


def dashboard_charts(data: dict, *, currencies: int = CHART_CURRENCIES) -> list[dict]:
    """
    Chart geometry for the top `currencies` series (live first, then by revenue): revenue
    per day as bars with a net-of-refunds line when there were refunds, and the success
    rate per day as a line; every day has a hover title with its exact numbers.
    """
    result = []
    for series in data["series"][:currencies]:
        currency = series["currency"]
        points = series["days"]
        days = [point["day"] for point in points]

        def money(amount: Decimal, currency: str = currency) -> str:
            return f"{amount_display(amount, currency)} {currency}"

        has_refunds = any(point["refunded"] for point in points)
        revenue_titles = []
        rate_titles = []
        for point in points:
            label = charts.day_label(point["day"])
            if point["day"] == data["end"]:
                label += " (today, so far)"
            title = (
                f"{label}: revenue {money(point['revenue'])} from {point['succeeded']} payment(s)"
            )
            if has_refunds:
                title += f"; refunds {money(point['refunded'])}; net {money(point['net'])}"
            revenue_titles.append(title)
            ended = point["succeeded"] + point["unsuccessful"]
            rate_titles.append(
                f"{label}: {point['success_rate']} % succeeded ({point['succeeded']} of {ended}); "
                f"{point['created']} created"
                if ended
                else f"{label}: no payment completed; {point['created']} created"
            )
        totals = series["totals"]
        result.append(
            {
                "key": series["key"],
                "currency": currency,
                "livemode": series["livemode"],
                "totals": totals,
                "revenue_total": money(totals["revenue"]),
                "refunded_total": money(totals["refunded"]),
                "net_total": money(totals["net"]),
                "has_refunds": has_refunds,
                "charts": [
                    {
                        "kind": "revenue",
                        "label": "Revenue per day",
                        "geometry": charts.bar_chart(
                            days=days,
                            values=[point["revenue"] for point in points],
                            titles=revenue_titles,
                            line=[point["net"] for point in points] if has_refunds else None,
                            partial_last=True,
                        ),
                    },
                    {
                        "kind": "success",
                        "label": "Success rate per day",
                        "geometry": charts.line_chart(
                            days=days,
                            values=[point["success_rate"] for point in points],
                            titles=rate_titles,
                        ),
                    },
                ],
            }
        )
    return result
