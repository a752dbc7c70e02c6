"""
`{% dashboard_panel %}`: the staff dashboard drawn on the admin index (`templates/admin/
index.html`), so the admin site class stays Django's own.

Who sees what: the money charts need `billing.view_invoice` (finance data; superusers have
every permission); each count needs the view permission of the model it counts, and links
to that model's changelist filtered to the rows it counted.
"""

from urllib.parse import urlencode

from django import template
from django.urls import NoReverseMatch, reverse

from billing.charts import day_label
from billing.dashboard import (
    COUNTS,
    MISMATCH_OPEN_STATE,
    amount_display,
    dashboard_charts,
    dashboard_data,
    mismatch_model,
)

register = template.Library()

MONEY_PERMISSION = "billing.view_invoice"


@register.inclusion_tag("admin/billing/dashboard_panel.html", takes_context=True)
def dashboard_panel(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_active or not user.is_staff:
        return {"visible": False}
    money = user.has_perm(MONEY_PERMISSION)
    counts = {name for name, permission in COUNTS.items() if user.has_perm(permission)}
    if not money and not counts:
        return {"visible": False}
    data = dashboard_data(money=money, counts=counts)
    return {
        "visible": True,
        "money": money,
        "start": data["start"],
        "end": data["end"],
        "period_days": len(data["days"]),
        "charts": dashboard_charts(data) if money else [],
        "summary": [_summary_row(series) for series in data["series"]],
        "counts": _count_tiles(data),
    }


def _summary_row(series: dict) -> dict:
    totals, currency = series["totals"], series["currency"]
    return {
        "currency": currency,
        "livemode": series["livemode"],
        "revenue": amount_display(totals["revenue"], currency),
        "refunded": amount_display(totals["refunded"], currency),
        "net": amount_display(totals["net"], currency),
        "created": totals["created"],
        "succeeded": totals["succeeded"],
        "unsuccessful": totals["unsuccessful"],
        "success_rate": totals["success_rate"],
    }


def _changelist(model: str, **filters) -> str | None:
    try:
        url = reverse(f"admin:{model}_changelist")
    except NoReverseMatch:  # not registered in this admin site
        return None
    return f"{url}?{urlencode(filters)}" if filters else url


def _count_tiles(data: dict) -> list[dict]:
    counts = data["counts"]
    links = {
        "webhooks_failed": (
            "Failed inbound webhooks",
            "waiting for a reprocess",
            lambda: _changelist("webhooks_inboundwebhook", status__exact="failed"),
        ),
        "deliveries_retrying": (
            "Callbacks retrying",
            "last attempt failed, retry scheduled",
            lambda: _changelist("webhooks_delivery", status__exact="pending", attempts__gte=1),
        ),
        "deliveries_failed": (
            "Callbacks given up",
            f"callbacks since {day_label(data['start'])}",
            lambda: _changelist(
                "webhooks_delivery", status__exact="failed", created_at__gte=data["start"]
            ),
        ),
        "endpoints_disabled": (
            "Endpoints disabled",
            "failing for days, or by staff",
            lambda: _changelist("webhooks_webhookendpoint", disabled__exact=1),
        ),
        "mismatches_open": ("Open reconciliation mismatches", "to take or resolve", _mismatches),
    }
    tiles = []
    for name, (label, hint, url) in links.items():
        if name not in counts:
            continue
        value = counts[name]
        tiles.append(
            {
                "name": name,
                "label": label,
                "hint": hint if value is not None else "reconciliation is not set up",
                "value": value,
                "url": url() if value is not None else None,
                "alert": bool(value),
            }
        )
    return tiles


def _mismatches() -> str | None:
    model = mismatch_model()
    if model is None:
        return None
    name = f"{model._meta.app_label}_{model._meta.model_name}"
    return _changelist(name, state__exact=MISMATCH_OPEN_STATE)
