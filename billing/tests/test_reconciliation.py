"""
Reconciliation against the sandbox (whose books are its own tables, edited here by hand to
play a provider that disagrees with us), from settlement reports, and what taking the
provider's state does to our payments, their timeline and the ledger.
"""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from billing import reconciliation
from billing.ledger import ledger_verify, merchant_net_volume
from billing.models import LedgerTransaction, ReconciliationMismatch, ReconciliationRun
from billing.tasks import reconciliation_nightly, reconciliation_run
from payments import ids, services
from payments.errors import InvalidState, ValidationFailed
from payments.models import (
    Payment,
    PaymentEvent,
    PaymentStatus,
    Refund,
    SandboxPayment,
    SandboxRefund,
)
from payments.providers.base import ProviderPayment, ProviderRefund
from payments.providers.sandbox import SandboxProvider
from payments.sandbox import gateway

pytestmark = pytest.mark.django_db

Kind = ReconciliationMismatch.Kind


@pytest.fixture(autouse=True)
def ids_follow_the_clock(monkeypatch):
    """
    Runs judge payments by their ids' time (ULIDs, as the API's created filters do). Ids
    are monotonic within a process, so a test that travelled in time earlier (to next
    year) would leave every later id dated there: start from the clock again.
    """
    monkeypatch.setattr(ids, "_last", 0)


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("fiona", password="x", is_staff=True)


def sandbox_paid(merchant, amount="599.00", *, capture=True) -> Payment:
    """A sandbox payment the buyer paid on the sandbox's page, synced as its webhook would."""
    payment = services.payment_create(
        merchant=merchant, amount=amount, currency="RUB", provider="sandbox", capture=capture
    )
    payment = services.payment_checkout_start(payment_id=payment.pk)
    gateway.checkout_submit(payment.provider_payment_id, "4242 4242 4242 4242")
    remote = SandboxProvider().payment_retrieve(payment.provider_payment_id)
    return services.payment_sync_from_provider(
        provider="sandbox", remote=remote, source=PaymentEvent.Source.PROVIDER
    )


def sandbox_refunded(payment: Payment, amount: str, *, settle=True) -> Refund:
    """A refund the sandbox made; settled here by its webhook unless `settle` is off."""
    refund = services.refund_create(payment=payment, amount=amount, source="api")
    services.refund_dispatch_start(refund_id=refund.pk)
    remote = SandboxRefund.objects.get(reference=refund.pk)
    if settle:
        services.refund_sync_from_provider(
            provider="sandbox",
            remote=ProviderRefund(
                provider_refund_id=remote.pk,
                provider_payment_id=remote.payment_id,
                status="succeeded",
                amount=remote.amount,
                currency=payment.currency,
                reference=refund.pk,
            ),
            source="provider",
        )
    return Refund.objects.get(pk=refund.pk)


def today() -> tuple[datetime, datetime]:
    now = timezone.now()
    return now - timedelta(hours=1), now + timedelta(minutes=1)


def reconcile(provider="sandbox", **create) -> ReconciliationRun:
    since, until = today()
    run = reconciliation.reconciliation_create(
        provider=provider, since=since, until=until, **create
    )
    return reconciliation.reconciliation_execute(run_id=run.pk)


def found(run: ReconciliationRun) -> set[tuple[str, str | None]]:
    return {(m.kind, m.refund_id or m.payment_id) for m in run.mismatches.all()}


# --- The must-show: three injected discrepancies ---------------------------------------------


def test_three_discrepancies_injected_at_the_sandbox_are_found_fixed_and_gone(merchant, staff):
    kept = sandbox_paid(merchant)
    deleted, flipped, cut = (sandbox_paid(merchant) for _ in range(3))
    # By hand, at the provider: a payment deleted, a status changed, an amount changed.
    SandboxPayment.objects.filter(pk=deleted.provider_payment_id).delete()
    SandboxPayment.objects.filter(pk=flipped.provider_payment_id).update(status="failed")
    SandboxPayment.objects.filter(pk=cut.provider_payment_id).update(
        amount=Decimal("500.00"), amount_captured=Decimal("500.00")
    )

    run = reconcile()

    assert (run.status, run.error) == ("succeeded", "")
    assert found(run) == {
        (Kind.MISSING_AT_PROVIDER, deleted.pk),
        (Kind.STATUS_DIFFERS, flipped.pk),
        (Kind.AMOUNT_DIFFERS, cut.pk),
    }
    assert (run.records_seen, run.ours_checked, run.mismatches_found) == (3, 4, 3)

    for mismatch in run.mismatches.all():
        reconciliation.mismatch_fix_from_provider(mismatch=mismatch, user=staff)

    deleted.refresh_from_db(), flipped.refresh_from_db(), cut.refresh_from_db()
    kept.refresh_from_db()
    assert (deleted.status, deleted.failure_code, deleted.amount_captured) == (
        "failed",
        "reconciled_missing_at_provider",
        Decimal(0),
    )
    assert (flipped.status, flipped.amount_captured) == ("failed", Decimal(0))
    assert (cut.status, cut.amount, cut.amount_captured) == (
        "succeeded",
        Decimal("500.00"),
        Decimal("500.00"),
    )
    assert (kept.status, kept.amount_captured) == ("succeeded", Decimal("599.00"))
    assert set(run.mismatches.values_list("state", flat=True)) == {"fixed_from_provider"}
    assert reconcile().mismatches_found == 0
    # The books follow: only what the provider holds is counted, and they prove sound.
    assert ledger_verify() == []
    assert merchant_net_volume(merchant.pk, "RUB") == Decimal("1099.00")


def test_taking_the_providers_state_is_in_the_timeline_with_the_staff_user(merchant, staff):
    payment = sandbox_paid(merchant)
    SandboxPayment.objects.filter(pk=payment.provider_payment_id).update(status="canceled")
    (mismatch,) = reconcile().mismatches.all()

    outcome = reconciliation.mismatch_fix_from_provider(mismatch=mismatch, user=staff)

    step = payment.events.get(type="reconciled")
    assert (step.source, step.actor) == ("admin", "admin:fiona")
    assert (step.from_status, step.to_status) == ("succeeded", "canceled")
    assert step.data["before"]["amount_captured"] == "599.00"
    assert step.data["after"]["amount_captured"] == "0.00"
    assert mismatch.pk in step.data["reason"]
    assert outcome.mismatch.resolved_by == staff
    assert "succeeded" in outcome.message and "canceled" in outcome.message
    # Reversed in the ledger by one balanced adjustment, named after the timeline step.
    adjustment = LedgerTransaction.objects.get(kind="payment.reconciled")
    assert (adjustment.reference, adjustment.payment_id) == (step.pk, payment.pk)
    assert {(e.account, e.amount) for e in adjustment.entries.all()} == {
        ("sales", Decimal("599.00")),
        ("provider_receivable:sandbox", Decimal("-599.00")),
    }


def test_a_move_the_state_machine_allows_goes_through_the_normal_sync(merchant, staff):
    payment = sandbox_paid(merchant, capture=False)
    # The capture happened at the provider, and its webhook never reached us.
    gateway.payment_capture(payment.provider_payment_id, Decimal("599.00"))
    (mismatch,) = reconcile().mismatches.all()
    assert mismatch.kind == Kind.STATUS_DIFFERS

    reconciliation.mismatch_fix_from_provider(mismatch=mismatch, user=staff)

    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == ("succeeded", Decimal("599.00"))
    step = payment.events.order_by("-id").first()
    assert (step.type, step.source, step.actor) == ("succeeded", "admin", "admin:fiona")
    assert not LedgerTransaction.objects.filter(kind="payment.reconciled").exists()
    assert LedgerTransaction.objects.filter(kind="payment.succeeded", payment_id=payment.pk)
    assert ledger_verify() == []


def test_money_the_provider_holds_for_a_payment_we_failed_is_taken_back_on_the_books(
    merchant, staff
):
    payment = sandbox_paid(merchant)
    with transaction.atomic():
        # Failed here (say a deadline sweep raced the buyer) while the provider was paid.
        services.payment_correct_from_provider(
            payment=payment, remote=None, actor="test", reason="setup"
        )
    (mismatch,) = reconcile().mismatches.all()
    assert mismatch.kind == Kind.STATUS_DIFFERS

    reconciliation.mismatch_fix_from_provider(mismatch=mismatch, user=staff)

    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == ("succeeded", Decimal("599.00"))
    assert merchant_net_volume(merchant.pk, "RUB") == Decimal("599.00")
    assert ledger_verify() == []


def test_a_fixed_or_resolved_mismatch_cannot_be_settled_again(merchant, staff):
    payment = sandbox_paid(merchant)
    SandboxPayment.objects.filter(pk=payment.provider_payment_id).delete()
    (mismatch,) = reconcile().mismatches.all()
    reconciliation.mismatch_fix_from_provider(mismatch=mismatch, user=staff)

    with pytest.raises(InvalidState, match="already Fixed"):
        reconciliation.mismatch_fix_from_provider(mismatch=mismatch, user=staff)
    with pytest.raises(InvalidState, match="already Fixed"):
        reconciliation.mismatch_resolve(mismatch=mismatch, user=staff, comment="again")
    assert payment.events.filter(type="reconciled").count() == 1


def test_resolving_needs_a_comment_and_keeps_it(merchant, staff):
    payment = sandbox_paid(merchant)
    SandboxPayment.objects.filter(pk=payment.provider_payment_id).update(status="failed")
    (mismatch,) = reconcile().mismatches.all()

    with pytest.raises(ValidationFailed, match="comment is required"):
        reconciliation.mismatch_resolve(mismatch=mismatch, user=staff, comment="  ")
    reconciliation.mismatch_resolve(
        mismatch=mismatch, user=staff, comment="Provider support confirmed it was paid."
    )

    mismatch.refresh_from_db()
    assert (mismatch.state, mismatch.resolved_by, mismatch.resolution) == (
        "resolved",
        staff,
        "Provider support confirmed it was paid.",
    )
    payment.refresh_from_db()
    assert payment.status == "succeeded"  # resolving changes no money
    step = payment.events.get(type="reconciliation_resolved")
    assert (step.actor, step.data["comment"]) == (
        "admin:fiona",
        "Provider support confirmed it was paid.",
    )


def test_a_record_unknown_here_can_only_be_resolved(merchant, staff):
    stranger = gateway.payment_open(
        idempotency_key="elsewhere",
        reference="",
        amount=Decimal("10.00"),
        currency="RUB",
        manual_capture=False,
        return_url="",
    )
    (mismatch,) = reconcile().mismatches.all()
    assert (mismatch.kind, mismatch.provider_payment_id, mismatch.payment_id) == (
        Kind.MISSING_HERE,
        stranger.pk,
        None,
    )
    assert mismatch.theirs["amount"] == "10.0000"

    with pytest.raises(InvalidState, match="unknown here"):
        reconciliation.mismatch_fix_from_provider(mismatch=mismatch, user=staff)


# --- What a run judges ------------------------------------------------------------------------


def test_the_sandbox_lists_page_by_page(merchant, monkeypatch):
    monkeypatch.setattr(SandboxProvider, "list_page_size", 2)
    payments = [sandbox_paid(merchant) for _ in range(5)]
    refunds = [sandbox_refunded(payments[0], "10.00") for _ in range(3)]
    since, until = today()
    provider = SandboxProvider()

    listed = list(provider.payments_list(created_gte=since, created_lt=until))
    listed_refunds = list(provider.refunds_list(created_gte=since, created_lt=until))

    assert [p.reference for p in listed] == [p.pk for p in payments]  # oldest first
    assert [r.reference for r in listed_refunds] == [r.pk for r in refunds]
    assert all(since <= p.created_at < until for p in listed)
    assert listed[0].amount == Decimal("599.00") and listed[0].currency == "RUB"
    assert listed[0].amount_captured == Decimal("599.00")
    assert (listed[0].card_brand, listed[0].card_last4) == ("visa", "4242")
    assert list(provider.payments_list(created_gte=until, created_lt=until + timedelta(1))) == []


def test_payments_that_never_reached_the_provider_are_not_missing(merchant):
    # No checkout was ever made: the provider cannot know it, nothing was taken.
    waiting = services.payment_create(merchant=merchant, amount="5.00", currency="RUB")
    failed = services.payment_create(merchant=merchant, amount="6.00", currency="RUB")
    services.payment_fail(payment_id=failed.pk, code="x", message="x", source="task")
    opened = services.payment_checkout_start(
        payment_id=services.payment_create(merchant=merchant, amount="7.00", currency="RUB").pk
    )
    SandboxPayment.objects.filter(pk=opened.provider_payment_id).delete()

    run = reconcile()

    # Only the one the provider gave an id to, and then lost, is missing there.
    assert found(run) == {(Kind.MISSING_AT_PROVIDER, opened.pk)}
    assert not {waiting.pk, failed.pk} & {m.payment_id for m in run.mismatches.all()}


def test_only_payments_made_in_the_range_are_judged(merchant):
    payment = sandbox_paid(merchant)
    SandboxPayment.objects.filter(pk=payment.provider_payment_id).update(status="failed")
    later = timezone.now() + timedelta(days=1)

    run = reconciliation.reconciliation_create(
        provider="sandbox", since=later, until=later + timedelta(days=1)
    )
    run = reconciliation.reconciliation_execute(run_id=run.pk)

    assert (run.status, run.mismatches_found) == ("succeeded", 0)


def test_a_provider_failure_fails_the_run_and_stores_nothing(merchant, monkeypatch):
    from payments.providers.base import ProviderTransientError

    for _ in range(2):
        SandboxPayment.objects.filter(pk=sandbox_paid(merchant).provider_payment_id).delete()

    def flaky(self, *, created_gte, created_lt):
        raise ProviderTransientError("down for maintenance")

    monkeypatch.setattr(SandboxProvider, "refunds_list", flaky)

    run = reconcile()

    assert run.status == "failed"
    assert run.error == "The provider failed: down for maintenance"
    assert not run.mismatches.exists() and run.mismatches_found == 0


def test_a_finished_run_is_not_run_again(merchant):
    payment = sandbox_paid(merchant)
    run = reconcile()
    SandboxPayment.objects.filter(pk=payment.provider_payment_id).delete()

    assert reconciliation_run(run.pk) == "succeeded"

    run.refresh_from_db()
    assert run.mismatches_found == 0 and not run.mismatches.exists()


def test_a_run_whose_worker_died_starts_over(merchant, settings):
    payment = sandbox_paid(merchant)
    SandboxPayment.objects.filter(pk=payment.provider_payment_id).delete()
    since, until = today()
    run = reconciliation.reconciliation_create(provider="sandbox", since=since, until=until)
    ReconciliationRun.objects.filter(pk=run.pk).update(status="running")

    assert reconciliation.reconciliation_execute(run_id=run.pk).status == "running"  # busy
    ReconciliationRun.objects.filter(pk=run.pk).update(
        updated_at=timezone.now() - timedelta(minutes=settings.RECONCILIATION_STALE_MINUTES + 1)
    )
    run = reconciliation.reconciliation_execute(run_id=run.pk)

    assert (run.status, run.mismatches_found) == ("succeeded", 1)


def test_the_nightly_run_reconciles_yesterday_once_per_provider(merchant):
    with_callbacks = reconciliation_nightly()
    again = reconciliation_nightly()

    (run,) = ReconciliationRun.objects.all()
    assert with_callbacks == [run.pk] and again == []
    midnight = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert (run.provider, run.since, run.until, run.source, run.started_by) == (
        "sandbox",
        midnight - timedelta(days=1),
        midnight,
        "api",
        None,
    )


def test_the_nightly_entry_is_in_the_beat_schedule(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["billing-reconcile-nightly"]
    assert entry["task"] == "billing.tasks.reconciliation_nightly"
    assert entry["task"] in reconciliation_nightly.app.tasks


def test_runs_only_for_providers_we_reconcile_and_real_ranges(settings):
    since, until = today()
    with pytest.raises(ValidationFailed, match="not 'credits'"):
        reconciliation.reconciliation_create(provider="credits", since=since, until=until)
    with pytest.raises(ValidationFailed, match="not enabled"):
        reconciliation.reconciliation_create(provider="stripe", since=since, until=until)
    with pytest.raises(ValidationFailed, match="must end after"):
        reconciliation.reconciliation_create(provider="sandbox", since=until, until=since)
    assert not ReconciliationRun.objects.exists()


# --- Refunds --------------------------------------------------------------------------------


def test_refund_differences_are_found(merchant, staff):
    payment = sandbox_paid(merchant)
    pending = sandbox_refunded(payment, "100.00", settle=False)  # its webhook was lost
    changed = sandbox_refunded(payment, "50.00")
    lost = sandbox_refunded(payment, "25.00")
    SandboxRefund.objects.filter(reference=changed.pk).update(amount=Decimal("40.00"))
    SandboxRefund.objects.filter(reference=lost.pk).delete()

    run = reconcile()

    assert found(run) == {
        (Kind.REFUND_DIFFERS, pending.pk),
        (Kind.REFUND_DIFFERS, changed.pk),
        (Kind.REFUND_DIFFERS, lost.pk),
    }
    by_refund = {m.refund_id: m for m in run.mismatches.all()}
    assert "status pending here, succeeded at the provider" in by_refund[pending.pk].summary
    assert "50.00 RUB here, 40.00 RUB at the provider" in by_refund[changed.pk].summary
    assert "missing at the provider" in by_refund[lost.pk].summary
    assert by_refund[lost.pk].payment_id == payment.pk

    # A refund still pending here takes the provider's outcome through the refund service.
    reconciliation.mismatch_fix_from_provider(mismatch=by_refund[pending.pk], user=staff)
    pending.refresh_from_db()
    payment.refresh_from_db()
    assert pending.status == "succeeded"
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", Decimal("175.00"))
    # A settled refund the provider disputes is never reversed automatically.
    for refund_id in (changed.pk, lost.pk):
        with pytest.raises(InvalidState, match="settle"):
            reconciliation.mismatch_fix_from_provider(mismatch=by_refund[refund_id], user=staff)
    assert ledger_verify() == []


def test_a_refund_unknown_here_is_reported(merchant):
    payment = sandbox_paid(merchant)
    gateway.refund_create(payment.provider_payment_id, Decimal("10.00"), idempotency_key="x")

    (mismatch,) = reconcile().mismatches.all()

    assert (mismatch.kind, mismatch.refund_id, mismatch.provider_payment_id) == (
        Kind.REFUND_DIFFERS,
        None,
        payment.provider_payment_id,
    )
    assert mismatch.summary.startswith("Refund missing here")


# --- The correction service -------------------------------------------------------------------


def remote_of(payment: Payment, **changes) -> ProviderPayment:
    fields = {
        "provider_payment_id": payment.provider_payment_id,
        "reference": payment.pk,
        "status": "succeeded",
        "amount": payment.amount,
        "currency": payment.currency,
        "amount_captured": payment.amount,
    }
    return ProviderPayment(**{**fields, **changes})


def test_a_correction_refuses_what_must_be_settled_by_hand(merchant):
    payment = sandbox_paid(merchant)
    sandbox_refunded(payment, "100.00")
    payment.refresh_from_db()

    cases = [
        (None, "has refunds here"),
        (remote_of(payment, currency="USD"), "never corrected automatically"),
        (remote_of(payment, provider_payment_id="sbx_pay_other"), "is not this payment's"),
        (remote_of(payment, amount_captured=Decimal("50.00")), "more than the"),
        (remote_of(payment, amount_captured=Decimal("700.00")), "inconsistent"),
    ]
    for remote, message in cases:
        with pytest.raises(InvalidState, match=message):
            services.payment_correct_from_provider(
                payment=payment, remote=remote, actor="admin:x", reason="test"
            )
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == ("partially_refunded", Decimal("599.00"))


def test_a_lower_capture_keeps_the_refunds_and_books_the_difference(merchant):
    payment = sandbox_paid(merchant)
    sandbox_refunded(payment, "100.00")

    corrected = services.payment_correct_from_provider(
        payment=payment,
        remote=remote_of(payment, amount_captured=Decimal("100.00")),
        actor="admin:x",
        reason="test",
    )

    assert (corrected.status, corrected.amount_captured, corrected.amount_refunded) == (
        PaymentStatus.REFUNDED,
        Decimal("100.00"),
        Decimal("100.00"),
    )
    assert merchant_net_volume(merchant.pk, "RUB") == Decimal(0)
    assert ledger_verify() == []


def test_taking_the_same_state_twice_changes_nothing(merchant):
    payment = sandbox_paid(merchant)
    remote = remote_of(payment, status="failed", amount_captured=Decimal(0))

    for _ in range(2):
        services.payment_correct_from_provider(
            payment=payment, remote=remote, actor="admin:x", reason="test"
        )

    assert payment.events.filter(type="reconciled").count() == 1
    assert LedgerTransaction.objects.filter(kind="payment.reconciled").count() == 1


# --- Settlement reports (CSV) ---------------------------------------------------------------

HEADER = "type,provider_payment_id,provider_refund_id,reference,status,amount,currency,created\n"


def report_row(payment: Payment, **changes) -> str:
    values = {
        "type": "payment",
        "provider_payment_id": payment.provider_payment_id,
        "provider_refund_id": "",
        "reference": payment.pk,
        "status": "succeeded",
        "amount": "599.00",
        "currency": "RUB",
        "created": timezone.now().isoformat(),
        **changes,
    }
    return ",".join(values.values()) + "\n"


def test_a_report_is_compared_like_the_api(merchant, staff):
    agreeing, short, missing = (sandbox_paid(merchant) for _ in range(3))
    content = HEADER + report_row(agreeing) + report_row(short, amount="590.00")
    since, until = today()

    run = reconciliation.reconciliation_create(
        provider="sandbox",
        since=since,
        until=until,
        source="report",
        report=content.encode(),
        report_name="settlement.csv",
    )
    assert (run.source, run.records_total) == ("report", 2)
    run = reconciliation.reconciliation_execute(run_id=run.pk)

    assert run.status == "succeeded"
    assert found(run) == {(Kind.AMOUNT_DIFFERS, short.pk), (Kind.MISSING_AT_PROVIDER, missing.pk)}
    # The sandbox's API is on: its current state is what is taken, not the report's.
    (mismatch,) = run.mismatches.filter(kind=Kind.AMOUNT_DIFFERS)
    reconciliation.mismatch_fix_from_provider(mismatch=mismatch, user=staff)
    short.refresh_from_db()
    assert short.amount == Decimal("599.00")


def test_a_reports_snapshot_is_taken_only_while_the_payment_is_as_the_run_saw_it(
    merchant, staff, settings
):
    payment = sandbox_paid(merchant)
    since, until = today()
    run = reconciliation.reconciliation_create(
        provider="sandbox",
        since=since,
        until=until,
        report=(HEADER + report_row(payment, status="failed")).encode(),
    )
    run = reconciliation.reconciliation_execute(run_id=run.pk)
    (mismatch,) = run.mismatches.all()
    settings.SANDBOX_ENABLED = False  # no API to ask: the report is all we have

    reconciliation.mismatch_fix_from_provider(mismatch=mismatch, user=staff)

    payment.refresh_from_db()
    assert payment.status == "failed"


def test_a_stale_report_snapshot_is_refused(merchant, staff, settings):
    payment = sandbox_paid(merchant, capture=False)
    since, until = today()
    run = reconciliation.reconciliation_create(
        provider="sandbox",
        since=since,
        until=until,
        report=(HEADER + report_row(payment, status="failed")).encode(),
    )
    (mismatch,) = reconciliation.reconciliation_execute(run_id=run.pk).mismatches.all()
    services.payment_capture(payment=payment, source="api")  # ours moved on since the run
    settings.SANDBOX_ENABLED = False

    with pytest.raises(InvalidState, match="changed since the run"):
        reconciliation.mismatch_fix_from_provider(mismatch=mismatch, user=staff)


def test_a_report_with_a_bad_row_names_its_line_and_stores_nothing(merchant):
    payment = sandbox_paid(merchant)
    since, until = today()
    bad_rows = {
        report_row(payment, amount="599.001"): "amount: RUB amounts can have at most 2",
        report_row(payment, amount="1e3"): "amount: Amount must be a positive decimal",
        report_row(payment, status="paid"): "status 'paid' is not one of",
        report_row(payment, created="2026-01-01T10:00:00"): "created '2026-01-01T10:00:00' has no",
        report_row(payment, type="payout"): "type must be 'payment' or 'refund'",
        report_row(payment, currency="XXQ"): "currency: Unsupported currency",
        report_row(payment, reference="", provider_payment_id=""): "a payment row needs",
        "payment,only,three\n": "3 fields where the header has 8",
    }
    for row, message in bad_rows.items():
        content = HEADER + report_row(payment) + row
        with pytest.raises(ValidationFailed, match=re.escape(f"Report line 3: {message}")):
            reconciliation.reconciliation_create(
                provider="sandbox", since=since, until=until, report=content.encode()
            )
    with pytest.raises(ValidationFailed, match="Report line 1: unknown column 'ammount'"):
        reconciliation.reconciliation_create(
            provider="sandbox",
            since=since,
            until=until,
            report=HEADER.replace("amount", "ammount").encode(),
        )
    assert not ReconciliationRun.objects.exists()
    assert not ReconciliationMismatch.objects.exists()


def test_report_rows_are_read_with_exact_money(merchant):
    lines = [
        "type,provider_payment_id,provider_refund_id,reference,status,amount,currency,"
        "amount_captured,created\n",
        "payment,pi_1,,pay_1,succeeded,100,JPY,,2026-03-01T10:00:00Z\n",
        "payment,pi_2,,,requires_capture,1.500,KWD,0,2026-03-01T10:00:00+03:00\n",
        "refund,pi_1,re_9,,succeeded,40,JPY,,2026-03-01T11:00:00Z\n",
    ]

    first, second, refund = reconciliation.report_records(lines)

    assert (first.amount, first.amount_captured, first.currency) == (
        Decimal("100"),
        Decimal("100"),
        "JPY",
    )
    assert (second.amount, second.amount_captured, second.status) == (
        Decimal("1.500"),
        Decimal(0),
        "requires_capture",
    )
    assert second.created_at == datetime(2026, 3, 1, 7, tzinfo=UTC)
    assert (refund.provider_refund_id, refund.amount, refund.status) == (
        "re_9",
        Decimal("40"),
        "succeeded",
    )


# --- Scale: the queries do not grow with the payments ------------------------------------------


def test_queries_grow_with_batches_not_with_payments(
    merchant, settings, monkeypatch, django_assert_max_num_queries
):
    settings.RECONCILIATION_BATCH_SIZE = 500
    monkeypatch.setattr(SandboxProvider, "list_page_size", 1000)
    count = 3000
    payments = Payment.objects.bulk_create(
        Payment(
            merchant=merchant,
            amount=Decimal("10.00"),
            currency="RUB",
            provider="sandbox",
            status="succeeded",
            amount_captured=Decimal("10.00"),
        )
        for _ in range(count)
    )
    remote = SandboxPayment.objects.bulk_create(
        SandboxPayment(
            reference=payment.pk,
            amount=Decimal("10.00"),
            currency="RUB",
            status="succeeded",
            amount_captured=Decimal("10.00"),
        )
        for payment in payments
    )
    for payment, record in zip(payments, remote, strict=True):
        payment.provider_payment_id = record.pk
    Payment.objects.bulk_update(payments, ["provider_payment_id"], batch_size=1000)
    SandboxPayment.objects.filter(pk=remote[7].pk).update(status="failed")
    since, until = today()
    run = reconciliation.reconciliation_create(provider="sandbox", since=since, until=until)

    # Pages of 1000 from the sandbox, batches of 500 here: a few dozen queries, not 3000.
    with django_assert_max_num_queries(60):
        run = reconciliation.reconciliation_execute(run_id=run.pk)

    assert (run.status, run.records_seen, run.ours_checked) == ("succeeded", count, count)
    assert found(run) == {(Kind.STATUS_DIFFERS, payments[7].pk)}
