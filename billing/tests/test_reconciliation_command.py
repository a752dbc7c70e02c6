"""`manage.py reconcile`: a run from the shell, its progress bar, summary and exit codes."""

from datetime import UTC, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.models import ReconciliationMismatch, ReconciliationRun
from billing.tests.test_reconciliation import HEADER, ids_follow_the_clock, report_row, sandbox_paid
from payments.models import SandboxPayment

pytestmark = pytest.mark.django_db

__all__ = ["ids_follow_the_clock"]  # an autouse fixture, shared


def reconcile(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("reconcile", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def today() -> str:
    return timezone.now().astimezone(UTC).date().isoformat()


def test_a_run_from_the_shell_prints_progress_and_a_summary(merchant):
    payment = sandbox_paid(merchant)
    sandbox_paid(merchant)
    SandboxPayment.objects.filter(pk=payment.provider_payment_id).update(status="failed")

    out, err = reconcile("--provider", "sandbox", "--since", today(), "--until", today())

    run = ReconciliationRun.objects.get()
    assert (run.status, run.since.date().isoformat(), run.until - run.since) == (
        "succeeded",
        today(),
        timedelta(days=1),
    )
    assert f"Reconciliation {run.pk}: sandbox" in err
    assert "\r2 provider records read, 2 of ours checked, 1 mismatches" in err
    assert "compared 2 provider records with 2 of our payments and refunds; 1 mismatches." in out
    assert "  status_differs: 1" in out


def test_the_default_range_is_yesterday(merchant):
    out, _ = reconcile("--provider", "sandbox")

    run = ReconciliationRun.objects.get()
    yesterday = timezone.now().astimezone(UTC).date() - timedelta(days=1)
    assert (run.since.date(), run.until.date()) == (yesterday, yesterday + timedelta(days=1))
    assert "0 mismatches." in out


def test_mismatches_fail_the_command_only_when_asked(merchant):
    payment = sandbox_paid(merchant)
    SandboxPayment.objects.filter(pk=payment.provider_payment_id).delete()

    reconcile("--provider", "sandbox", "--since", today())  # found, and still a success
    with pytest.raises(CommandError, match="1 mismatches found") as failed:
        reconcile("--provider", "sandbox", "--since", today(), "--fail-on-mismatch")

    assert failed.value.returncode == 2


def test_a_report_file_is_streamed_with_a_progress_bar(merchant, tmp_path):
    payment = sandbox_paid(merchant)
    path = tmp_path / "settlement.csv"
    path.write_text(HEADER + report_row(payment, amount="590.00"))

    out, err = reconcile("--provider", "sandbox", "--since", today(), "--report", str(path))

    run = ReconciliationRun.objects.get()
    assert (run.source, run.report_name, run.records_total, run.report) == (
        "report",
        "settlement.csv",
        1,
        None,
    )
    assert "[" + "#" * 30 + "] 100% 1/1 records" in err
    assert "amount_differs: 1" in out


def test_a_bad_report_exits_non_zero_naming_the_line_and_stores_nothing(merchant, tmp_path):
    payment = sandbox_paid(merchant)
    path = tmp_path / "settlement.csv"
    path.write_text(HEADER + report_row(payment) + report_row(payment, currency="RU"))

    with pytest.raises(CommandError, match="Report line 3: currency") as failed:
        reconcile("--provider", "sandbox", "--report", str(path))

    assert failed.value.returncode == 1
    assert not ReconciliationRun.objects.exists()
    assert not ReconciliationMismatch.objects.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--provider", "stripe"], "not enabled"),
        (["--provider", "paypal"], "not 'paypal'"),
        (["--provider", "sandbox", "--since", "yesterday"], "neither a day nor"),
        (["--provider", "sandbox", "--since", "2026-03-01T10:00:00"], "needs a time zone"),
        (["--provider", "sandbox", "--since", "2026-03-02", "--until", "2026-03-01"], "end after"),
        (["--provider", "sandbox", "--report", "/nonexistent.csv"], "Cannot read the report"),
    ],
)
def test_bad_input_exits_non_zero_with_a_clear_message(args, message):
    with pytest.raises(CommandError, match=message):
        reconcile(*args)
    assert not ReconciliationRun.objects.exists()


def test_a_failed_run_exits_non_zero(merchant, monkeypatch):
    from payments.providers.base import ProviderTransientError
    from payments.providers.sandbox import SandboxProvider

    def down(self, *, created_gte, created_lt):
        raise ProviderTransientError("the sandbox is down")
        yield

    monkeypatch.setattr(SandboxProvider, "payments_list", down)

    with pytest.raises(CommandError, match="FAILED: The provider failed: the sandbox is down"):
        reconcile("--provider", "sandbox")
    assert ReconciliationRun.objects.get().status == "failed"
