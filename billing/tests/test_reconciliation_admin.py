"""
Reconciliation in the admin: Finance starts a run (it runs in Celery, eager here) and
settles its mismatches; staff without the permissions are refused; every settlement is in
Django's admin log and the payment's timeline under the user's name.
"""

from datetime import UTC

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from billing.models import ReconciliationMismatch, ReconciliationRun
from billing.tests.test_reconciliation import (
    HEADER,
    ids_follow_the_clock,
    reconcile,
    report_row,
    sandbox_paid,
)
from payments.models import SandboxPayment

pytestmark = pytest.mark.django_db

__all__ = ["ids_follow_the_clock"]  # an autouse fixture, shared

RUNS = "/admin/billing/reconciliationrun/"
MISMATCHES = "/admin/billing/reconciliationmismatch/"


def staff_client(username: str, *codenames: str) -> tuple[Client, object]:
    user = get_user_model().objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client, user


@pytest.fixture
def finance():
    return staff_client("fiona", "run_reconciliation", "resolve_mismatch")


@pytest.fixture
def support():
    return staff_client(
        "sam", "view_reconciliationrun", "view_reconciliationmismatch", "view_payment"
    )


def today() -> str:
    return timezone.now().astimezone(UTC).date().isoformat()


def broken(merchant):
    """A paid sandbox payment, and the sandbox's record of it changed to failed by hand."""
    payment = sandbox_paid(merchant)
    SandboxPayment.objects.filter(pk=payment.provider_payment_id).update(status="failed")
    return payment


def test_finance_starts_a_run_from_the_admin_and_follows_it(
    merchant, finance, django_capture_on_commit_callbacks
):
    client, user = finance
    payment = broken(merchant)
    form = client.get(f"{RUNS}add/")
    assert form.status_code == 200 and b"Settlement report (CSV)" in form.content

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"{RUNS}add/", {"provider": "sandbox", "since_day": today(), "until_day": today()}
        )

    run = ReconciliationRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"{RUNS}{run.pk}/change/"
    assert (run.status, run.source, run.started_by, run.mismatches_found) == (
        "succeeded",
        "api",
        user,
        1,
    )
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"1 provider records read, 1 of ours checked" in page.content
    assert f"{MISMATCHES}?run={run.pk}".encode() in page.content
    assert b'http-equiv="refresh"' not in page.content  # finished: no more refreshing
    listing = client.get(MISMATCHES, {"run": run.pk, "kind": "status_differs"})
    assert listing.status_code == 200 and payment.pk.encode() in listing.content
    assert LogEntry.objects.filter(user=user, object_id=run.pk).exists()


def test_a_queued_run_page_refreshes_itself(merchant, finance):
    client, _ = finance
    client.post(f"{RUNS}add/", {"provider": "sandbox", "since_day": today(), "until_day": today()})
    run = ReconciliationRun.objects.get()  # on-commit never ran: still queued

    page = client.get(f"{RUNS}{run.pk}/change/")

    assert run.status == "queued"
    assert b'http-equiv="refresh"' in page.content


def test_a_run_from_an_uploaded_report(merchant, finance, django_capture_on_commit_callbacks):
    client, _ = finance
    payment = sandbox_paid(merchant)
    report = SimpleUploadedFile(
        "settlement.csv", (HEADER + report_row(payment, amount="590.00")).encode()
    )

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"{RUNS}add/",
            {
                "provider": "sandbox",
                "since_day": today(),
                "until_day": today(),
                "report_file": report,
            },
        )

    run = ReconciliationRun.objects.get()
    assert (run.source, run.report_name, run.records_total, run.status) == (
        "report",
        "settlement.csv",
        1,
        "succeeded",
    )
    assert run.mismatches.get().kind == "amount_differs"


def test_a_bad_report_is_shown_on_the_form_and_nothing_starts(merchant, finance):
    client, _ = finance
    payment = sandbox_paid(merchant)
    report = SimpleUploadedFile(
        "settlement.csv", (HEADER + report_row(payment, status="paid")).encode()
    )

    response = client.post(
        f"{RUNS}add/",
        {"provider": "sandbox", "since_day": today(), "until_day": today(), "report_file": report},
    )

    assert response.status_code == 200
    assert b"Report line 2: status &#x27;paid&#x27; is not one of" in response.content
    assert not ReconciliationRun.objects.exists()


def test_staff_without_the_permission_cannot_start_a_run(support):
    client, _ = support

    assert client.get(RUNS).status_code == 200
    assert client.get(f"{RUNS}add/").status_code == 403
    response = client.post(
        f"{RUNS}add/", {"provider": "sandbox", "since_day": today(), "until_day": today()}
    )
    assert response.status_code == 403
    assert not ReconciliationRun.objects.exists()


def test_taking_the_providers_state_asks_first_then_fixes_and_logs(merchant, finance):
    client, user = finance
    payment = broken(merchant)
    mismatch = reconcile().mismatches.get()
    action = {"action": "take_provider_state", "_selected_action": [mismatch.pk]}

    confirm = client.post(MISMATCHES, action)

    assert confirm.status_code == 200
    assert b"Yes, take the provider&#x27;s state" in confirm.content
    mismatch.refresh_from_db()
    assert mismatch.state == "open"  # nothing happens before the confirmation

    done = client.post(MISMATCHES, {**action, "confirmed": "yes"})

    assert done.status_code == 302
    mismatch.refresh_from_db()
    payment.refresh_from_db()
    assert (mismatch.state, mismatch.resolved_by) == ("fixed_from_provider", user)
    assert payment.status == "failed"
    step = payment.events.get(type="reconciled")
    assert (step.source, step.actor) == ("admin", "admin:fiona")
    logged = LogEntry.objects.filter(user=user)
    assert logged.filter(object_id=mismatch.pk).exists()
    assert "took the provider's state" in logged.get(object_id=payment.pk).change_message


def test_marking_resolved_needs_a_comment(merchant, finance):
    client, user = finance
    payment = broken(merchant)
    mismatch = reconcile().mismatches.get()
    action = {"action": "mark_resolved", "_selected_action": [mismatch.pk], "confirmed": "yes"}

    empty = client.post(MISMATCHES, {**action, "comment": "  "})

    assert empty.status_code == 200 and b"This field is required" in empty.content
    mismatch.refresh_from_db()
    assert mismatch.state == "open"

    done = client.post(MISMATCHES, {**action, "comment": "Refunded at the provider by hand."})

    assert done.status_code == 302
    mismatch.refresh_from_db()
    assert (mismatch.state, mismatch.resolution, mismatch.resolved_by) == (
        "resolved",
        "Refunded at the provider by hand.",
        user,
    )
    entry = LogEntry.objects.get(user=user, object_id=mismatch.pk)
    assert "Refunded at the provider by hand." in entry.change_message
    assert payment.events.get(type="reconciliation_resolved").actor == "admin:fiona"


def test_staff_without_the_permission_cannot_settle_mismatches(merchant, support):
    client, _ = support
    broken(merchant)
    mismatch = reconcile().mismatches.get()

    listing = client.get(MISMATCHES)
    for action in ("take_provider_state", "mark_resolved"):
        response = client.post(
            MISMATCHES,
            {
                "action": action,
                "_selected_action": [mismatch.pk],
                "confirmed": "yes",
                "comment": "x",
            },
            follow=True,
        )
        assert response.status_code == 200

    assert listing.status_code == 200
    assert b"take_provider_state" not in listing.content
    mismatch.refresh_from_db()
    assert mismatch.state == "open"
    assert not LogEntry.objects.filter(object_id=mismatch.pk).exists()


def test_mismatches_are_filtered_by_kind_state_provider_and_run(merchant, admin_client):
    flipped = broken(merchant)
    lost = sandbox_paid(merchant)
    SandboxPayment.objects.filter(pk=lost.provider_payment_id).delete()
    run = reconcile()

    by_kind = admin_client.get(MISMATCHES, {"kind": "missing_at_provider"})
    by_state = admin_client.get(MISMATCHES, {"state": "open", "provider": "sandbox"})
    by_run = admin_client.get(MISMATCHES, {"run": run.pk})
    other_run = admin_client.get(MISMATCHES, {"run": "rcr_none"})

    assert lost.pk.encode() in by_kind.content and flipped.pk.encode() not in by_kind.content
    assert lost.pk.encode() in by_state.content and flipped.pk.encode() in by_state.content
    assert lost.pk.encode() in by_run.content
    assert lost.pk.encode() not in other_run.content
    detail = admin_client.get(f"{MISMATCHES}{run.mismatches.first().pk}/change/")
    assert detail.status_code == 200 and b"theirs" in detail.content.lower()


def test_the_payment_page_lists_its_mismatches(merchant, admin_client):
    payment = broken(merchant)
    mismatch = reconcile().mismatches.get()

    page = admin_client.get(f"/admin/payments/payment/{payment.pk}/change/")

    assert page.status_code == 200
    assert mismatch.pk.encode() in page.content
    assert ReconciliationMismatch.objects.count() == 1
