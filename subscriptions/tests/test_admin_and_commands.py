"""Plans, subscriptions and invoices in the admin; `seed_demo` plans; `run_subscriptions`."""

import json
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command

from billing.models import Invoice
from conftest import client_for
from subscriptions.models import Plan, Subscription
from subscriptions.tests.flows import pay_subscription, subscribe

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_staff_add_a_plan_and_bad_money_is_refused(admin_client, merchant):
    form = {
        "merchant": merchant.pk,
        "code": "premium",
        "name": "Premium",
        "amount": "599.001",
        "currency": "rub",
        "interval": "month",
        "interval_count": 1,
        "trial_days": 0,
        "active": "on",
        "metadata": "{}",
    }

    refused = admin_client.post("/admin/subscriptions/plan/add/", form)
    assert refused.status_code == 200  # the form again, with the error
    assert b"RUB amounts can have at most 2 decimal places." in refused.content
    assert Plan.objects.count() == 0

    created = admin_client.post("/admin/subscriptions/plan/add/", {**form, "amount": "599.00"})
    assert created.status_code == 302
    plan = Plan.objects.get()
    assert (plan.amount, plan.currency) == (599, "RUB")
    change = admin_client.get(f"/admin/subscriptions/plan/{plan.pk}/change/")
    assert b'name="amount"' not in change.content  # price terms are fixed once made


def test_staff_cancel_a_subscription_from_the_admin_and_it_is_logged(admin_client, api, premium):
    subscription = pay_subscription(api, subscribe(api, "premium"))

    response = admin_client.post(
        "/admin/subscriptions/subscription/",
        {"action": "cancel_now", "_selected_action": [subscription["id"]]},
    )

    assert response.status_code == 302
    assert Subscription.objects.get(pk=subscription["id"]).status == "canceled"
    assert LogEntry.objects.filter(object_id=subscription["id"]).exists()
    for url in [
        "/admin/subscriptions/subscription/",
        f"/admin/subscriptions/subscription/{subscription['id']}/change/",
        "/admin/billing/invoice/",
        "/admin/subscriptions/plan/",
        "/admin/billing/billingprofile/",
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_the_invoice_admin_serves_the_pdf(admin_client, api, premium):
    subscription = pay_subscription(api, subscribe(api, "premium"))
    invoice = Invoice.objects.get(subscription_id=subscription["id"])

    page = admin_client.get(f"/admin/billing/invoice/{invoice.pk}/change/")
    pdf = admin_client.get(f"/admin/billing/invoice/{invoice.pk}/pdf/")

    assert page.status_code == 200 and f"/admin/billing/invoice/{invoice.pk}/pdf/" in (
        page.content.decode()
    )
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF")


def test_seed_demo_sells_the_three_cinema_plans():
    demo = json.loads(run("seed_demo", "--json"))
    run("seed_demo", "--json")  # idempotent

    plans = client_for(demo["publishable_key"]).get("/api/v1/plans").json()["results"]
    assert sorted((p["code"], p["amount"], p["currency"], p["interval"]) for p in plans) == [
        ("basic", "299.00", "RUB", "month"),
        ("family", "899.00", "RUB", "month"),
        ("premium", "599.00", "RUB", "month"),
    ]


def test_run_subscriptions_prints_a_summary():
    assert run("run_subscriptions").strip() == "Subscriptions advanced: 0, failed: 0"


def test_seed_demo_makes_a_support_and_a_finance_login_that_work(client):
    demo = json.loads(run("seed_demo", "--json"))

    assert set(demo["role_users"]) == {"support", "finance"}
    for username, password in demo["role_users"].items():
        client.logout()
        login = client.post(
            "/admin/login/?next=/admin/", {"username": username, "password": password}
        )
        assert login.status_code == 302, username
        assert client.get("/admin/payments/payment/").status_code == 200
    assert json.loads(run("seed_demo", "--json"))["role_users"] == demo["role_users"]
