"""`manage.py reconcile`: one reconciliation run, here and now, with a progress bar."""

import os
from datetime import UTC, date, datetime, time, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing import reconciliation
from billing.models import ReconciliationRun
from payments.errors import PaymentError
from payments.progress import progress_bar

# Exit statuses: 1 a failure (the run could not be made or did not finish), 2 mismatches
# found with --fail-on-mismatch. Finding mismatches is otherwise a success: the run worked.
EXIT_MISMATCHES = 2


class Command(BaseCommand):
    help = (
        "Compare our payments and refunds with a provider's records (its list API, or a "
        "settlement report in CSV) and store every mismatch, for staff to settle in the admin. "
        "Runs in this process with a progress bar on stderr and prints a summary. Exits 1 when "
        "the run fails; finding mismatches is a success (exit 0) unless --fail-on-mismatch "
        "(exit 2)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--provider", required=True, help="sandbox, stripe or yookassa.")
        parser.add_argument(
            "--since",
            help=(
                "Start, inclusive: a day (2026-03-01, from its midnight UTC) or an ISO 8601 "
                "time with a zone. Default: yesterday (UTC)."
            ),
        )
        parser.add_argument(
            "--until",
            help=(
                "End: a day is inclusive (through its end), an ISO 8601 time is exclusive. "
                "Default: the day of --since, or yesterday."
            ),
        )
        parser.add_argument(
            "--report",
            metavar="FILE",
            help="A settlement report (CSV, columns in README) to compare with, not the API.",
        )
        parser.add_argument(
            "--fail-on-mismatch",
            action="store_true",
            help="Exit 2 when mismatches are found (for scripts and monitoring).",
        )

    def handle(self, *args, **options):
        self.stderr.style_func = None  # progress is not an error: no red
        provider = options["provider"]
        yesterday = timezone.now().astimezone(UTC).date() - timedelta(days=1)
        since = _moment(options["since"], "--since", end=False) if options["since"] else None
        since = since or datetime.combine(yesterday, time.min, tzinfo=UTC)
        if options["until"]:
            until = _moment(options["until"], "--until", end=True)
        else:
            until = datetime.combine(since.date() + timedelta(days=1), time.min, tzinfo=UTC)
        path = options["report"]
        try:
            if path:
                total = _count(path)
                run = reconciliation.reconciliation_create(
                    provider=provider,
                    since=since,
                    until=until,
                    source=ReconciliationRun.Source.REPORT,
                    report_name=os.path.basename(path),
                    records_total=total,
                )
            else:
                run = reconciliation.reconciliation_create(
                    provider=provider, since=since, until=until
                )
        except PaymentError as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(f"Reconciliation {run.pk}: {provider}, {_span(run)}")
        if path:
            with open(path, encoding="utf-8-sig", newline="") as lines:
                run = reconciliation.reconciliation_execute(
                    run_id=run.pk, report=lines, progress=self._progress
                )
        else:
            run = reconciliation.reconciliation_execute(run_id=run.pk, progress=self._progress)
        self.stderr.write("")  # end the progress line
        if run.status != ReconciliationRun.Status.SUCCEEDED:
            raise CommandError(f"Reconciliation {run.pk} FAILED: {run.error}")
        counts = reconciliation.mismatch_counts(run)
        self.stdout.write(
            f"Reconciliation {run.pk} of {provider} ({_span(run)}): compared "
            f"{run.records_seen:,} provider records with {run.ours_checked:,} of our payments "
            f"and refunds; {run.mismatches_found:,} mismatches."
        )
        for kind, count in counts.items():
            if count:
                self.stdout.write(f"  {kind}: {count:,}")
        if run.mismatches_found and options["fail_on_mismatch"]:
            raise CommandError(
                f"{run.mismatches_found:,} mismatches found.", returncode=EXIT_MISMATCHES
            )

    def _progress(self, progress: reconciliation.Progress) -> None:
        seen = progress.records_seen
        if progress.records_total:
            done = min(seen, progress.records_total) / progress.records_total
            bar = progress_bar(seen, progress.records_total)
            line = f"{bar} {done:4.0%} {seen:,}/{progress.records_total:,} records"
        else:
            line = f"{seen:,} provider records read"
        line += (
            f", {progress.ours_checked:,} of ours checked, {progress.mismatches_found:,} mismatches"
        )
        self.stderr.write(f"\r{line}", ending="")
        self.stderr.flush()


def _count(path: str) -> int:
    try:
        with open(path, encoding="utf-8-sig", newline="") as lines:
            return reconciliation.report_count(lines)
    except OSError as exc:
        raise CommandError(f"Cannot read the report: {exc}") from None
    except UnicodeDecodeError:
        raise CommandError("The report is not UTF-8 text.") from None


def _moment(raw: str, option: str, *, end: bool) -> datetime:
    """A day (`end`: the midnight after it) or an ISO 8601 time with a zone."""
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        day = None
    if day is not None:
        return datetime.combine(day + timedelta(days=1 if end else 0), time.min, tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise CommandError(f"{option}: '{raw}' is neither a day nor an ISO 8601 time.") from None
    if moment.tzinfo is None:
        raise CommandError(f"{option}: '{raw}' needs a time zone (Z or +03:00).")
    return moment


def _span(run: ReconciliationRun) -> str:
    return f"{run.since.isoformat()} to {run.until.isoformat()}"
