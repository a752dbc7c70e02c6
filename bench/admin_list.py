"""
Time the payments admin on a big database, as a logged-in superuser.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/payments_bulk \
        .venv/bin/python bench/admin_list.py

Seed first with `manage.py seed_demo --payments 1000000`. For each page: the median of
five requests (after one warm-up), how many SQL queries it ran and their total time, and
its slowest query; `--sql` prints every query of every page, and queries slower than
`--explain-ms` (100 by default) are shown with `EXPLAIN (ANALYZE, BUFFERS)` on PostgreSQL.
`--what-if` measures again with the fixes it recommends for the admin applied in this
process only. Read-only apart from the superuser `bench` it logs in as (made if missing).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if not os.environ.get("DATABASE_URL"):
    sys.exit("Set DATABASE_URL to the database to measure (never the default one by accident).")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payments_project.settings")
os.environ.setdefault("DJANGO_ENV_FILE", "")
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
os.environ.setdefault("DEBUG", "false")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from payments.models import Customer, Payment  # noqa: E402

LIST = "/admin/payments/payment/"
RUNS = 5


def samples() -> dict[str, str]:
    """Values to search for, taken from the data: a typical row from the middle of it."""
    total = Payment.objects.count()
    if total == 0:
        sys.exit("No payments: seed first (manage.py seed_demo --payments 1000000).")
    middle = Payment.objects.order_by("-id").exclude(order_id="")[total // 2 : total // 2 + 1]
    payment = middle.get()
    provider_payment = (
        Payment.objects.filter(provider="stripe").exclude(provider_payment_id="").order_by("-id")
    )[total // 20 : total // 20 + 1].get()
    # The busiest customer: the biggest result a customer search can have.
    busiest = (
        Payment.objects.filter(customer__isnull=False)
        .values("customer")
        .annotate(n=Count("id"))
        .order_by("-n")
        .first()
    )
    customer = Customer.objects.get(pk=busiest["customer"])
    rarest = (
        Payment.objects.filter(customer__isnull=False)
        .values("customer")
        .annotate(n=Count("id"))
        .order_by("n")
        .first()
    )
    return {
        "payment_id": payment.pk,
        "order_id": payment.order_id,
        "provider_payment_id": provider_payment.provider_payment_id,
        "email": customer.email,
        "rare_email": Customer.objects.get(pk=rarest["customer"]).email,
        "external_id": customer.external_id,
        "busiest_count": busiest["n"],
        "total": total,
    }


def pages(s: dict) -> list[tuple[str, str]]:
    return [
        ("list", LIST),
        ("status=failed", f"{LIST}?status__exact=failed"),
        ("stripe+USD", f"{LIST}?provider__exact=stripe&currency__exact=USD"),
        ("status=requires_capture", f"{LIST}?status__exact=requires_capture"),
        ("q=email (busiest)", f"{LIST}?q={s['email']}"),
        ("q=email (1 payment)", f"{LIST}?q={s['rare_email']}"),
        ("q=unknown email", f"{LIST}?q=nobody@example.com"),
        ("q=external id", f"{LIST}?q={s['external_id']}"),
        ("q=order id", f"{LIST}?q={s['order_id']}"),
        ("q=payment id", f"{LIST}?q={s['payment_id']}"),
        ("q=provider id", f"{LIST}?q={s['provider_payment_id']}"),
        ("created=7d", f"{LIST}?created=7d"),
        ("failed+30d", f"{LIST}?status__exact=failed&created=30d"),
        ("list page 200", f"{LIST}?p=199"),  # the last one under a 10,000-row count cap
        ("change page", f"{LIST}{s['payment_id']}/change/"),
    ]


def measure(client: Client, url: str) -> dict:
    response = client.get(url, secure=True)  # warm-up (and the status to report)
    times, captured = [], None
    for _ in range(RUNS):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url, secure=True)
            times.append(time.perf_counter() - started)
        captured = queries.captured_queries
    slowest = max(captured, key=lambda q: float(q["time"]), default={"time": "0", "sql": ""})
    return {
        "status": response.status_code,
        "median_ms": statistics.median(times) * 1000,
        "queries": len(captured),
        "sql_ms": sum(float(q["time"]) for q in captured) * 1000,
        "slowest_ms": float(slowest["time"]) * 1000,
        "slowest_sql": slowest["sql"],
        "captured": captured,
    }


def what_if() -> None:
    """
    The fixes this benchmark recommends for `payments/admin.py`, applied in this process
    only (the file is not touched), to measure them before anyone writes them:
    - provider and currency filters with fixed choices: Django's default filter for a field
      without `choices` runs SELECT DISTINCT over the whole table on every page;
    - a search that looks customers up first and filters payments by the ids it found:
      a subquery inside the OR makes PostgreSQL walk the whole primary key instead.
    """
    from django.contrib import admin
    from django.db.models import Q

    import payments.admin as payments_admin
    from payments import providers

    def fixed(field: str, values: list[str]):
        class Fixed(admin.SimpleListFilter):
            title = field
            parameter_name = f"{field}__exact"

            def lookups(self, request, model_admin):
                return [(value, value) for value in values]

            def queryset(self, request, queryset):
                return queryset.filter(**{field: self.value()}) if self.value() else queryset

        return Fixed

    choices = {"provider": list(providers.ALL_PROVIDERS), "currency": ["EUR", "RUB", "USD"]}
    model_admin = admin.site._registry[Payment]
    model_admin.list_filter = [
        fixed(f, choices[f]) if f in choices else f for f in model_admin.list_filter
    ]
    original = payments_admin.payment_search
    shapes = [shape for shape, _ in getattr(payments_admin, "_PROVIDER_ID_SHAPES", [])]

    def search(queryset, term):
        term = term.strip()
        if "@" in term:
            found = Customer.objects.filter(email__iexact=term).values_list("pk", flat=True)
            return queryset.filter(customer_id__in=list(found[:100]))
        if (
            not term
            or term.startswith(("pay_", "cus_", "cs_"))
            or any(shape.match(term) for shape in shapes)
        ):
            return original(queryset, term)
        matches = Q(order_id=term) | Q(reference=term)
        found = list(Customer.objects.filter(external_id=term).values_list("pk", flat=True))
        if found:
            matches |= Q(customer_id__in=found)
        return queryset.filter(matches)

    payments_admin.payment_search = search


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def explain(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sql", action="store_true", help="Print every query of every page.")
    parser.add_argument("--explain-ms", type=float, default=100.0)
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="Measure with the recommended admin fixes applied in this process only.",
    )
    args = parser.parse_args()
    if args.what_if:
        what_if()

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    user = get_user_model().objects.filter(username="bench").first()
    if user is None:
        user = get_user_model().objects.create_superuser("bench", "bench@example.com", None)
    client = Client()
    client.force_login(user)

    s = samples()
    out(
        f"{connection.vendor}, {s['total']:,} payments; busiest customer {s['email']} "
        f"({s['busiest_count']:,} payments)\n"
    )
    header = f"{'page':<24}{'status':>7}{'median ms':>11}{'queries':>9}{'SQL ms':>9}{'slowest':>9}"
    out(header)
    out("-" * len(header))
    slow = []
    for name, url in pages(s):
        r = measure(client, url)
        out(
            f"{name:<24}{r['status']:>7}{r['median_ms']:>11.0f}{r['queries']:>9}"
            f"{r['sql_ms']:>9.0f}{r['slowest_ms']:>9.0f}"
        )
        if args.sql:
            for q in r["captured"]:
                out(f"    {float(q['time']) * 1000:7.1f} ms  {q['sql'][:400]}")
        if r["slowest_ms"] >= args.explain_ms:
            slow.append((name, url, r))
    for name, url, r in slow:
        out(f"\n== {name} ({url}): slowest query {r['slowest_ms']:.0f} ms\n{r['slowest_sql']}\n")
        if connection.vendor == "postgresql" and r["slowest_sql"].lstrip().upper().startswith(
            "SELECT"
        ):
            out(explain(r["slowest_sql"]))


if __name__ == "__main__":
    main()
