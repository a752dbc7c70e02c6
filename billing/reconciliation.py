"""
Reconciliation: compare our payments and refunds with a provider's own records over a
time range, store every disagreement as a `ReconciliationMismatch`, and let staff settle
each one by taking the provider's state or by resolving it with a comment.

Where the provider's records come from:
- its list API (`Provider.payments_list` / `refunds_list`: Stripe, YooKassa, the sandbox),
  read over the run's range widened by `RECONCILIATION_PROVIDER_LAG_HOURS` (a provider
  makes its record after ours: Stripe's PaymentIntent only when the buyer confirms), or
- a settlement report in CSV (`REPORT_COLUMNS`, parsed strictly by `report_records`).

Which records a run judges. Our payments and refunds belong to the run whose range holds
their creation time (their id: ids are time-ordered ULIDs, as everywhere in the API). A
provider record is compared with ours whenever it names one of ours in the range, however
late the provider made it; a record that names nothing of ours is "missing here" only
when the provider made it inside the range (the next or previous run owns the others).
Ours is "missing at the provider" when the provider should know it (it gave us its id, or
the payment took money) and no record named it; once staff took that state (the payment
failed with `reconciled_missing_at_provider`), it is not reported again.

Memory stays bounded for millions of records: provider records are read a page at a time
and compared in batches of `RECONCILIATION_BATCH_SIZE` (one or two indexed queries per
batch find our rows), our side is walked by keyset pages of the primary key, and
mismatches are written with `bulk_create` per batch. What grows with the run is one set of
the ids of our payments and refunds the provider named (about 100 bytes each: ~100 MB for
a million), needed to tell which of ours it never named.
"""

import csv
import io
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, Count, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from billing.models import ReconciliationMismatch, ReconciliationRun
from payments import money, providers
from payments import services as payment_services
from payments.errors import (
    InvalidState,
    PaymentError,
    ProviderUnavailable,
    ValidationFailed,
)
from payments.ids import ulid_floor
from payments.models import Payment, PaymentEvent, PaymentStatus, Refund, RefundStatus
from payments.providers.base import (
    ProviderDeclined,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    ProviderTransientError,
)

logger = logging.getLogger(__name__)

Kind = ReconciliationMismatch.Kind
State = ReconciliationMismatch.State
RunStatus = ReconciliationRun.Status

# The providers whose books are not ours (credits are: nothing to reconcile).
RECONCILABLE_PROVIDERS = (providers.SANDBOX, providers.STRIPE, providers.YOOKASSA)

# Provider clocks are not ours: a record stamped a little before our payment is still its.
CLOCK_SKEW = timedelta(minutes=5)
# Progress (the admin's page, the command's bar, the run's heartbeat) is written this often.
PROGRESS_INTERVAL_SECONDS = 1.0

# Our statuses in the provider's vocabulary: refunds are separate records there.
_PROVIDER_VIEW = {
    PaymentStatus.PARTIALLY_REFUNDED: PaymentStatus.SUCCEEDED,
    PaymentStatus.REFUNDED: PaymentStatus.SUCCEEDED,
}
# A payment the provider must know even when it never told us its id: it took money.
_MONEY_STATUSES = [
    PaymentStatus.REQUIRES_CAPTURE,
    PaymentStatus.SUCCEEDED,
    PaymentStatus.PARTIALLY_REFUNDED,
    PaymentStatus.REFUNDED,
]
# What a comparison reads of ours: no timestamps (their decoding is most of the cost of a
# million rows, and an id says when it was made).
_PAYMENT_FIELDS = (
    "id", "status", "amount", "currency", "amount_captured", "amount_refunded",
    "provider_payment_id",
)  # fmt: skip
_REFUND_FIELDS = ("id", "payment_id", "status", "amount", "currency", "provider_refund_id")


class ReconciliationRetry(Exception):
    """A provider failed for now: the run was put back in the queue to start over."""


# --- The settlement report (CSV) ------------------------------------------------------------

REPORT_COLUMNS = (
    "type",  # payment | refund
    "provider_payment_id",  # the provider's payment id (a refund row: its payment's)
    "provider_refund_id",  # refund rows: the provider's refund id
    "reference",  # our id, where the provider keeps it: pay_… or re_…
    "status",  # in our vocabulary (see below)
    "amount",  # a decimal string in major units, at the currency's exponent: "599.00"
    "currency",  # ISO 4217
    "amount_captured",  # payment rows, optional: default the amount when succeeded, else 0
    "created",  # when the provider made it: ISO 8601 with a time zone
)
_REQUIRED_COLUMNS = {"type", "status", "amount", "currency", "created"}
_PAYMENT_STATUSES = {"pending", "requires_capture", "succeeded", "failed", "canceled"}
_REFUND_STATUSES = {"pending", "succeeded", "failed", "canceled"}


def report_records(lines: Iterable[str]) -> Iterator[ProviderPayment | ProviderRefund]:
    """
    The records of a settlement report, one row at a time (the file is never held whole).
    Strict: the header must name the required columns and no unknown ones, and the first
    bad row raises ValidationFailed naming its line. Money goes through `payments.money`.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise _report_error(1, "the report is empty; the first line must name the columns")
    columns = [name.strip().lower() for name in header]
    unknown = [name for name in columns if name not in REPORT_COLUMNS]
    if unknown:
        raise _report_error(
            1, f"unknown column '{unknown[0]}' (known: {', '.join(REPORT_COLUMNS)})"
        )
    if len(set(columns)) != len(columns):
        raise _report_error(1, "a column is named twice")
    missing = sorted(_REQUIRED_COLUMNS - set(columns))
    if missing:
        raise _report_error(1, f"missing column '{missing[0]}'")
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(columns):
            raise _report_error(
                reader.line_num, f"{len(row)} fields where the header has {len(columns)}"
            )
        values = {name: cell.strip() for name, cell in zip(columns, row, strict=True)}
        try:
            record = _report_record(values)
        except PaymentError as exc:
            raise _report_error(reader.line_num, f"{exc.param}: {exc.message}") from None
        except ValueError as exc:
            raise _report_error(reader.line_num, str(exc)) from None
        yield record


def report_count(lines: Iterable[str]) -> int:
    """Check a whole report (as `report_records` reads it) and count its records."""
    return sum(1 for _ in report_records(lines))


def report_lines(content: bytes) -> Iterator[str]:
    """A stored report's lines (UTF-8, a byte-order mark allowed)."""
    try:
        text = io.TextIOWrapper(io.BytesIO(content), encoding="utf-8-sig", newline="")
        yield from text
    except UnicodeDecodeError:
        raise ValidationFailed("The report is not UTF-8 text.", param="report") from None


def _report_error(line: int, problem: str) -> ValidationFailed:
    return ValidationFailed(f"Report line {line}: {problem.rstrip('.')}.", param="report")


def _report_record(values: dict) -> ProviderPayment | ProviderRefund:
    kind = values["type"].lower()
    if kind not in ("payment", "refund"):
        raise ValueError(f"type must be 'payment' or 'refund', not '{values['type']}'")
    currency = money.currency_normalize(values["currency"])
    amount = money.amount_parse(values["amount"], currency)
    created = _report_time(values["created"])
    status = values["status"].lower()
    provider_payment_id = values.get("provider_payment_id", "")
    reference = values.get("reference", "")
    if kind == "payment":
        if status not in _PAYMENT_STATUSES:
            raise ValueError(
                f"status '{status}' is not one of {', '.join(sorted(_PAYMENT_STATUSES))}"
            )
        if values.get("provider_refund_id"):
            raise ValueError("a payment row has no provider_refund_id")
        if not (provider_payment_id or reference):
            raise ValueError("a payment row needs provider_payment_id or reference")
        raw_captured = values.get("amount_captured", "")
        if raw_captured:
            captured = _amount_or_zero(raw_captured, currency, "amount_captured")
        else:
            captured = amount if status == PaymentStatus.SUCCEEDED else Decimal(0)
        if captured > amount:
            raise ValueError("amount_captured is more than amount")
        return ProviderPayment(
            provider_payment_id=provider_payment_id,
            reference=reference,
            status=status,
            amount=amount,
            currency=currency,
            amount_captured=captured,
            created_at=created,
        )
    if status not in _REFUND_STATUSES:
        raise ValueError(f"status '{status}' is not one of {', '.join(sorted(_REFUND_STATUSES))}")
    if values.get("amount_captured"):
        raise ValueError("a refund row has no amount_captured")
    if not (values.get("provider_refund_id") or reference):
        raise ValueError("a refund row needs provider_refund_id or reference")
    return ProviderRefund(
        provider_refund_id=values.get("provider_refund_id", ""),
        provider_payment_id=provider_payment_id,
        status=status,
        amount=amount,
        currency=currency,
        reference=reference,
        created_at=created,
    )


def _amount_or_zero(raw: str, currency: str, param: str) -> Decimal:
    """An amount that may be zero (nothing captured), otherwise held to `amount_parse`."""
    if re.fullmatch(r"0+(?:\.0+)?", raw):
        if len(raw.partition(".")[2]) > money.CURRENCY_EXPONENTS[currency]:
            raise ValueError(f"{param}: {currency} has fewer decimal places")
        return Decimal(0)
    return money.amount_parse(raw, currency, param=param)


def _report_time(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"created '{raw}' is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"created '{raw}' has no time zone (add Z or +03:00)")
    return moment


# --- Starting runs --------------------------------------------------------------------------


def reconciliation_check(
    *,
    provider: str,
    since: datetime,
    until: datetime,
    report: bytes | None = None,
    from_report: bool = False,
) -> int | None:
    """
    Refuse a run that cannot be made (ValidationFailed naming the field): a provider we
    do not reconcile, or one not enabled when its API is to be read (not `from_report`),
    a range that ends before it starts, a report too large or with a bad row. Returns the
    count of records of a `report` given as bytes.
    """
    if provider not in RECONCILABLE_PROVIDERS:
        raise ValidationFailed(
            f"Reconciliation compares with {', '.join(RECONCILABLE_PROVIDERS)}, not '{provider}'.",
            param="provider",
        )
    if report is None and not from_report and not providers.provider_enabled(provider):
        raise ValidationFailed(
            f"The {provider} provider is not enabled here: reconcile it from a report.",
            param="provider",
        )
    if timezone.is_naive(since) or timezone.is_naive(until):
        raise ValidationFailed("Times need a time zone.", param="since")
    if since >= until:
        raise ValidationFailed("The range must end after it starts.", param="until")
    if report is None:
        return None
    if len(report) > settings.RECONCILIATION_REPORT_MAX_BYTES:
        raise ValidationFailed(
            f"The report is larger than {settings.RECONCILIATION_REPORT_MAX_BYTES} bytes: "
            "run `manage.py reconcile --report FILE` on a worker instead.",
            param="report",
        )
    return report_count(report_lines(report))


def reconciliation_create(
    *,
    provider: str,
    since: datetime,
    until: datetime,
    source: str = ReconciliationRun.Source.API,
    started_by=None,
    report: bytes | None = None,
    report_name: str = "",
    records_total: int | None = None,
) -> ReconciliationRun:
    """
    A queued run, checked by `reconciliation_check`. A report given as bytes is checked
    and stored with the run; the command checks its file itself and passes the count.
    """
    if report is not None:
        source = ReconciliationRun.Source.REPORT
    counted = reconciliation_check(
        provider=provider,
        since=since,
        until=until,
        report=report,
        from_report=source == ReconciliationRun.Source.REPORT,
    )
    if report is not None:
        records_total = counted
    return ReconciliationRun.objects.create(
        provider=provider,
        since=since,
        until=until,
        source=source,
        report=report,
        report_name=report_name[:255],
        records_total=records_total,
        started_by=started_by,
    )


def reconciliation_start(
    *,
    provider: str,
    since: datetime,
    until: datetime,
    started_by=None,
    report: bytes | None = None,
    report_name: str = "",
) -> ReconciliationRun:
    """Create a run (from the API, or from an uploaded report) and run it in Celery."""
    from billing.tasks import reconciliation_run
    from payments_project.celery import enqueue_on_commit

    source = ReconciliationRun.Source.REPORT if report is not None else ReconciliationRun.Source.API
    with transaction.atomic():
        run = reconciliation_create(
            provider=provider,
            since=since,
            until=until,
            source=source,
            started_by=started_by,
            report=report,
            report_name=report_name,
        )
        enqueue_on_commit(reconciliation_run, run.pk)
    return run


def reconciliation_nightly_start(*, now: datetime | None = None) -> list[ReconciliationRun]:
    """
    Yesterday (UTC) for every enabled provider, once: a run already made for that day
    (and not failed) is not made again, so a beat that fires twice costs nothing.
    """
    now = now or timezone.now()
    until = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = until - timedelta(days=1)
    started = []
    for provider in providers.enabled_providers():
        if provider not in RECONCILABLE_PROVIDERS:
            continue
        done = (
            ReconciliationRun.objects.filter(
                provider=provider,
                since=since,
                until=until,
                source=ReconciliationRun.Source.API,
                started_by__isnull=True,
            )
            .exclude(status=RunStatus.FAILED)
            .exists()
        )
        if not done:
            started.append(reconciliation_start(provider=provider, since=since, until=until))
    return started


# --- Running --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    records_seen: int
    records_total: int | None
    ours_checked: int
    mismatches_found: int


def reconciliation_execute(
    *,
    run_id: str,
    report: Iterable[str] | None = None,
    progress: Callable[[Progress], None] | None = None,
    retryable: bool = False,
) -> ReconciliationRun | None:
    """
    Run a queued run to the end: succeeded with its mismatches, or failed with its error
    and no mismatches (an incomplete comparison proves nothing). Idempotent: a finished
    run, or one another worker is running, is left alone; one whose worker died (no
    progress for `RECONCILIATION_STALE_MINUTES`) starts over. `report` gives a report
    run its lines when they are not stored (the command streams its file); `progress` is
    called about once a second and at the end. With `retryable`, a provider failing for
    now puts the run back in the queue and raises ReconciliationRetry, for the task to
    try again later.
    """
    run = _claim(run_id)
    if run is None:
        return ReconciliationRun.objects.defer("report").filter(pk=run_id).first()
    reconciler = _Reconciler(run, progress)
    try:
        reconciler.feed(_provider_records(run, report))
        reconciler.finish()
    except ProviderTransientError as exc:
        if retryable:
            _requeue(run, exc.message)
            raise ReconciliationRetry(exc.message) from exc
        return _fail(run, f"The provider failed: {exc.message}")
    except ProviderError as exc:
        return _fail(run, f"The provider refused: {exc.message}")
    except PaymentError as exc:
        return _fail(run, exc.message)
    except Exception as exc:
        logger.exception("Reconciliation %s failed", run.pk)
        return _fail(run, f"Unexpected error: {type(exc).__name__}: {exc}")
    ReconciliationRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED,
        finished_at=timezone.now(),
        updated_at=timezone.now(),
        **reconciler.counters(),
    )
    logger.info("Reconciliation %s succeeded: %s", run.pk, reconciler.counters())
    return ReconciliationRun.objects.defer("report").get(pk=run.pk)


def _claim(run_id: str) -> ReconciliationRun | None:
    now = timezone.now()
    with transaction.atomic():
        run = (
            ReconciliationRun.objects.select_for_update().defer("report").filter(pk=run_id).first()
        )
        if run is None or run.finished:
            return None
        stale = now - timedelta(minutes=settings.RECONCILIATION_STALE_MINUTES)
        if run.status == RunStatus.RUNNING and run.updated_at > stale:
            return None  # another worker has it
        run.mismatches.all().delete()  # a restart begins from nothing
        run.status = RunStatus.RUNNING
        run.started_at = now
        run.records_seen = run.ours_checked = run.mismatches_found = 0
        run.error = ""
        run.save(
            update_fields=[
                "status", "started_at", "records_seen", "ours_checked", "mismatches_found",
                "error", "updated_at",
            ]
        )  # fmt: skip
    return run


def _fail(run: ReconciliationRun, error: str) -> ReconciliationRun:
    logger.warning("Reconciliation %s failed: %s", run.pk, error)
    with transaction.atomic():
        run.mismatches.all().delete()
        ReconciliationRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED,
            error=error[:5000],
            mismatches_found=0,
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
    return ReconciliationRun.objects.defer("report").get(pk=run.pk)


def _requeue(run: ReconciliationRun, error: str) -> None:
    with transaction.atomic():
        run.mismatches.all().delete()
        ReconciliationRun.objects.filter(pk=run.pk).update(
            status=RunStatus.QUEUED,
            error=f"Will retry: {error}"[:5000],
            records_seen=0,
            ours_checked=0,
            mismatches_found=0,
            updated_at=timezone.now(),
        )


def _provider_records(
    run: ReconciliationRun, report: Iterable[str] | None
) -> Iterator[ProviderPayment | ProviderRefund]:
    if run.source == ReconciliationRun.Source.REPORT:
        if report is None:
            stored = ReconciliationRun.objects.filter(pk=run.pk).values_list("report", flat=True)
            content = stored.get()
            if content is None:
                raise ValidationFailed("The run's report is not stored.", param="report")
            report = report_lines(bytes(content))
        yield from report_records(report)
        return
    adapter = providers.get_provider(run.provider)
    lag = timedelta(hours=settings.RECONCILIATION_PROVIDER_LAG_HOURS)
    fetch_since = run.since - CLOCK_SKEW
    fetch_until = min(run.until + lag, max(timezone.now() + CLOCK_SKEW, run.until))
    yield from adapter.payments_list(created_gte=fetch_since, created_lt=fetch_until)
    yield from adapter.refunds_list(created_gte=fetch_since, created_lt=fetch_until)


class _Reconciler:
    """One run's comparison: fed the provider's records, then `finish` looks at ours."""

    def __init__(self, run: ReconciliationRun, progress: Callable[[Progress], None] | None):
        self.run = run
        self.progress = progress
        self.batch_size = settings.RECONCILIATION_BATCH_SIZE
        self.livemode = providers.provider_livemode(run.provider)
        self.payment_ids = (f"pay_{ulid_floor(run.since)}", f"pay_{ulid_floor(run.until)}")
        self.refund_ids = (f"re_{ulid_floor(run.since)}", f"re_{ulid_floor(run.until)}")
        # Ours in the range that a provider record named (see the module docstring).
        self.seen_payments: set[str] = set()
        self.seen_refunds: set[str] = set()
        self.pending: list[ReconciliationMismatch] = []
        self.records_seen = self.ours_checked = self.mismatches_found = 0
        self.reported_at = 0.0  # monotonic time of the last progress write

    def counters(self) -> dict:
        return {
            "records_seen": self.records_seen,
            "ours_checked": self.ours_checked,
            "mismatches_found": self.mismatches_found,
        }

    # --- The provider's records, in batches ----------------------------------------------

    def feed(self, records: Iterable[ProviderPayment | ProviderRefund]) -> None:
        payments: list[ProviderPayment] = []
        refunds: list[ProviderRefund] = []
        for record in records:
            self.records_seen += 1
            if isinstance(record, ProviderPayment):
                payments.append(record)
                if len(payments) >= self.batch_size:
                    self._payments(payments)
                    payments = []
            else:
                refunds.append(record)
                if len(refunds) >= self.batch_size:
                    self._refunds(refunds)
                    refunds = []
        if payments:
            self._payments(payments)
        if refunds:
            self._refunds(refunds)

    def _ours(self, model, fields, records, ref_of, pid_of, pid_field: str) -> tuple[dict, dict]:
        """Our rows the batch names: by our id (reference), then by the provider's id."""
        mine = model.objects.filter(provider=self.run.provider, livemode=self.livemode)
        by_pk = {}
        references = {ref_of(r) for r in records if ref_of(r)}
        if references:
            rows = _one_of(mine, "id", references).values(*fields)
            by_pk = {row["id"]: row for row in rows}
        by_pid = {row[pid_field]: row for row in by_pk.values() if row[pid_field]}
        unknown = {
            pid_of(r)
            for r in records
            if pid_of(r) and pid_of(r) not in by_pid and ref_of(r) not in by_pk
        }
        if unknown:
            # `exclude` spells out the partial index's condition, so the planner uses it.
            rows = _one_of(mine, pid_field, unknown).exclude(**{pid_field: ""})
            for row in rows.values(*fields):
                by_pk[row["id"]] = row
                by_pid[row[pid_field]] = row
        return by_pk, by_pid

    @staticmethod
    def _match(record_pid: str, reference: str, by_pk: dict, by_pid: dict, pid_field: str):
        ours = by_pid.get(record_pid) if record_pid else None
        if ours is None and reference in by_pk:
            candidate = by_pk[reference]
            # Our id on another provider object than the one we know is not ours.
            if not (candidate[pid_field] and record_pid and candidate[pid_field] != record_pid):
                ours = candidate
        return ours

    def _in_range(self, created: datetime | None) -> bool:
        return created is None or self.run.since <= created < self.run.until

    def _payments(self, records: list[ProviderPayment]) -> None:
        by_pk, by_pid = self._ours(
            Payment,
            _PAYMENT_FIELDS,
            records,
            lambda r: r.reference,
            lambda r: r.provider_payment_id,
            "provider_payment_id",
        )
        low, high = self.payment_ids
        for record in records:
            ours = self._match(
                record.provider_payment_id, record.reference, by_pk, by_pid, "provider_payment_id"
            )
            if ours is None:
                if self._in_range(record.created_at):
                    self._add(
                        Kind.MISSING_HERE,
                        f"Missing here: the provider's {record.provider_payment_id or '?'} "
                        f"({record.status}, {_shown(record.amount, record.currency)})"
                        + (f" names {record.reference}" if record.reference else ""),
                        theirs=_payment_theirs(record),
                        provider_payment_id=record.provider_payment_id,
                        reference=record.reference,
                    )
                continue
            if not low <= ours["id"] < high or ours["id"] in self.seen_payments:
                continue  # another run's payment, or a record listed twice
            self.seen_payments.add(ours["id"])
            self._compare_payment(ours, record)
        self._checkpoint()

    def _compare_payment(self, ours: dict, record: ProviderPayment) -> None:
        status = _PROVIDER_VIEW.get(ours["status"], ours["status"])
        problems = []
        if status != record.status:
            problems.append(f"status {ours['status']} here, {record.status} at the provider")
        if record.currency.upper() != ours["currency"]:
            problems.append(f"currency {ours['currency']} here, {record.currency} at the provider")
        elif record.amount != ours["amount"]:
            problems.append(
                f"amount {_shown(ours['amount'], ours['currency'])} here, "
                f"{_shown(record.amount, record.currency)} at the provider"
            )
        if status == record.status == PaymentStatus.SUCCEEDED:
            captured = record.amount_captured or record.amount
            if captured != ours["amount_captured"]:
                problems.append(
                    f"captured {_shown(ours['amount_captured'], ours['currency'])} here, "
                    f"{_shown(captured, record.currency)} at the provider"
                )
        if not problems:
            return
        kind = Kind.STATUS_DIFFERS if status != record.status else Kind.AMOUNT_DIFFERS
        self._add(
            kind,
            f"Payment {ours['id']}: " + "; ".join(problems),
            payment_id=ours["id"],
            ours=_payment_ours(ours),
            theirs=_payment_theirs(record),
            provider_payment_id=record.provider_payment_id,
            reference=record.reference,
        )

    def _refunds(self, records: list[ProviderRefund]) -> None:
        by_pk, by_pid = self._ours(
            Refund,
            _REFUND_FIELDS,
            records,
            lambda r: r.reference,
            lambda r: r.provider_refund_id,
            "provider_refund_id",
        )
        low, high = self.refund_ids
        for record in records:
            ours = self._match(
                record.provider_refund_id, record.reference, by_pk, by_pid, "provider_refund_id"
            )
            if ours is None:
                if self._in_range(record.created_at):
                    self._add(
                        Kind.REFUND_DIFFERS,
                        f"Refund missing here: the provider's {record.provider_refund_id or '?'} "
                        f"({record.status}, {_shown(record.amount, record.currency)}) of payment "
                        f"{record.provider_payment_id or '?'}",
                        theirs=_refund_theirs(record),
                        provider_payment_id=record.provider_payment_id,
                        provider_refund_id=record.provider_refund_id,
                        reference=record.reference,
                    )
                continue
            if not low <= ours["id"] < high or ours["id"] in self.seen_refunds:
                continue
            self.seen_refunds.add(ours["id"])
            problems = []
            if ours["status"] != record.status:
                problems.append(f"status {ours['status']} here, {record.status} at the provider")
            if record.currency.upper() != ours["currency"] or record.amount != ours["amount"]:
                problems.append(
                    f"amount {_shown(ours['amount'], ours['currency'])} here, "
                    f"{_shown(record.amount, record.currency)} at the provider"
                )
            if problems:
                self._add(
                    Kind.REFUND_DIFFERS,
                    f"Refund {ours['id']}: " + "; ".join(problems),
                    payment_id=ours["payment_id"],
                    refund_id=ours["id"],
                    ours=_refund_ours(ours),
                    theirs=_refund_theirs(record),
                    provider_payment_id=record.provider_payment_id,
                    provider_refund_id=record.provider_refund_id,
                    reference=record.reference,
                )
        self._checkpoint()

    # --- Ours that no record named ---------------------------------------------------------

    def finish(self) -> None:
        # A payment staff already settled as lost by the provider is not reported again.
        expected_payments = Q(~Q(provider_payment_id="") | Q(status__in=_MONEY_STATUSES)) & ~Q(
            status=PaymentStatus.FAILED,
            failure_code=payment_services.RECONCILED_MISSING_AT_PROVIDER,
        )
        for rows in self._our_pages(Payment, self.payment_ids, expected_payments):
            for row in rows:
                if row["id"] not in self.seen_payments:
                    self._add(
                        Kind.MISSING_AT_PROVIDER,
                        f"Payment {row['id']} ({row['status']}, "
                        f"{_shown(row['amount'], row['currency'])}) is missing at the provider",
                        payment_id=row["id"],
                        ours=_payment_ours(row),
                        provider_payment_id=row["provider_payment_id"],
                    )
        expected_refunds = Q(~Q(provider_refund_id="") | Q(status=RefundStatus.SUCCEEDED))
        for rows in self._our_pages(Refund, self.refund_ids, expected_refunds):
            for row in rows:
                if row["id"] not in self.seen_refunds:
                    self._add(
                        Kind.REFUND_DIFFERS,
                        f"Refund {row['id']} ({row['status']}, "
                        f"{_shown(row['amount'], row['currency'])}) is missing at the provider",
                        payment_id=row["payment_id"],
                        refund_id=row["id"],
                        ours=_refund_ours(row),
                        provider_refund_id=row["provider_refund_id"],
                    )
        self._checkpoint(final=True)

    def _our_pages(self, model, id_range: tuple[str, str], expected: Q) -> Iterator[list[dict]]:
        """
        Our rows of the range the provider should know, a page at a time by keyset on the
        primary key (bounded, and independent of server-side cursors). Only the ids are
        read for all of them; the few the provider never named are read whole.
        """
        low, high = id_range
        rows = model.objects.filter(
            provider=self.run.provider, livemode=self.livemode, pk__gte=low, pk__lt=high
        ).filter(expected)
        fields = _PAYMENT_FIELDS if model is Payment else _REFUND_FIELDS
        seen = self.seen_payments if model is Payment else self.seen_refunds
        after = ""
        while True:
            page = rows.filter(pk__gt=after) if after else rows
            ids = list(page.order_by("pk").values_list("pk", flat=True)[: self.batch_size])
            if not ids:
                return
            self.ours_checked += len(ids)
            unseen = [pk for pk in ids if pk not in seen]
            if unseen:
                yield list(model.objects.filter(pk__in=unseen).order_by("pk").values(*fields))
            self._checkpoint()
            after = ids[-1]

    # --- Writing ------------------------------------------------------------------------

    def _add(self, kind: str, summary: str, **fields) -> None:
        self.pending.append(
            ReconciliationMismatch(
                run_id=self.run.pk,
                provider=self.run.provider,
                kind=kind,
                summary=summary[:500],
                **fields,
            )
        )

    def _checkpoint(self, *, final: bool = False) -> None:
        if self.pending:
            ReconciliationMismatch.objects.bulk_create(self.pending, batch_size=1000)
            self.mismatches_found += len(self.pending)
            self.pending = []
        now = time.monotonic()
        if not final and now - self.reported_at < PROGRESS_INTERVAL_SECONDS:
            return
        self.reported_at = now
        # `updated_at` by hand: update() skips auto_now, and it is the run's heartbeat.
        ReconciliationRun.objects.filter(pk=self.run.pk).update(
            updated_at=timezone.now(), **self.counters()
        )
        if self.progress is not None:
            self.progress(Progress(records_total=self.run.records_total, **self.counters()))


def _one_of(queryset, field: str, values: set[str]):
    """
    `field IN values`. On PostgreSQL the values travel as one array parameter (`= ANY`):
    a batch of thousands of ids then costs one parameter to prepare, not thousands, which
    is most of a batch's time otherwise. Same plan, same index.
    """
    if connection.vendor != "postgresql":
        return queryset.filter(**{f"{field}__in": values})
    meta = queryset.model._meta
    column = f'"{meta.db_table}"."{meta.get_field(field).column}"'
    return queryset.filter(
        RawSQL(f"{column} = ANY(%s)", (sorted(values),), output_field=BooleanField())
    )


def _shown(amount: Decimal, currency: str) -> str:
    try:
        return f"{money.amount_format(Decimal(amount), currency)} {currency}"
    except (KeyError, ValueError, TypeError):
        return f"{amount} {currency}"


def _text(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return "" if value is None else str(value)


def _payment_ours(row: dict) -> dict:
    return {
        "status": row["status"],
        "amount": _text(row["amount"]),
        "currency": row["currency"],
        "amount_captured": _text(row["amount_captured"]),
        "amount_refunded": _text(row["amount_refunded"]),
        "provider_payment_id": row["provider_payment_id"],
    }


def _payment_theirs(record: ProviderPayment) -> dict:
    return {
        "provider_payment_id": record.provider_payment_id,
        "reference": record.reference,
        "status": record.status,
        "amount": _text(record.amount),
        "currency": record.currency,
        "amount_captured": _text(record.amount_captured),
        "failure_code": record.failure_code,
        "failure_message": record.failure_message,
        "created_at": _text(record.created_at),
    }


def _refund_ours(row: dict) -> dict:
    return {
        "status": row["status"],
        "amount": _text(row["amount"]),
        "currency": row["currency"],
        "provider_refund_id": row["provider_refund_id"],
    }


def _refund_theirs(record: ProviderRefund) -> dict:
    return {
        "provider_refund_id": record.provider_refund_id,
        "provider_payment_id": record.provider_payment_id,
        "reference": record.reference,
        "status": record.status,
        "amount": _text(record.amount),
        "currency": record.currency,
        "failure_reason": record.failure_reason,
        "created_at": _text(record.created_at),
    }


def mismatch_counts(run: ReconciliationRun) -> dict[str, int]:
    """A run's mismatches by kind (every kind, zeros included), for summaries."""
    counts = dict.fromkeys(Kind.values, 0)
    for kind, number in run.mismatches.order_by().values_list("kind").annotate(n=Count("id")):
        counts[kind] = number
    return counts


# --- Settling mismatches --------------------------------------------------------------------


@dataclass(frozen=True)
class FixOutcome:
    mismatch: ReconciliationMismatch
    payment: Payment | None
    message: str


def mismatch_fix_from_provider(*, mismatch: ReconciliationMismatch, user) -> FixOutcome:
    """
    Take the provider's state for one open mismatch, through the payments services:
    `payment_sync_from_provider` for moves the state machine allows,
    `payment_correct_from_provider` for the corrections it forbids (ledger-booked), and
    `refund_sync_from_provider` for a refund still pending here. The provider is asked
    afresh where its API can be (a run's snapshot may be stale); a report's snapshot is
    used only while our side is still what the run saw. What cannot be taken (a record
    unknown here, a settled refund the provider disputes) raises InvalidState: settle
    those by hand and resolve them with a comment.
    """
    actor = f"admin:{user.get_username()}"
    mismatch = ReconciliationMismatch.objects.select_related("run").get(pk=mismatch.pk)
    _require_open(mismatch)
    if mismatch.refund_id:
        return _refund_fix(mismatch, user, actor)
    if mismatch.payment_id is None:
        raise InvalidState(
            "Nothing of ours to change: the provider's record is unknown here. Settle it with "
            "the provider, then mark the mismatch resolved."
        )
    payment = Payment.objects.get(pk=mismatch.payment_id)
    remote, fresh = _provider_view(mismatch, payment)
    reason = f"Reconciliation {mismatch.run_id}, mismatch {mismatch.pk}: {mismatch.summary}"
    with transaction.atomic():
        locked = ReconciliationMismatch.objects.select_for_update().get(pk=mismatch.pk)
        _require_open(locked)
        before = Payment.objects.get(pk=payment.pk)
        if not fresh and _payment_ours(_values(before)) != locked.ours:
            raise InvalidState(
                f"Payment {payment.pk} changed since the run; run reconciliation again."
            )
        after = _payment_take(before, remote, actor=actor, reason=reason)
        if (after.status, after.amount, after.amount_captured) == (
            before.status,
            before.amount,
            before.amount_captured,
        ):
            message = f"Payment {after.pk} already agrees with the provider ({after.status})."
        else:
            message = (
                f"Payment {after.pk} took the provider's state: {before.status} "
                f"{_shown(before.amount_captured, before.currency)} captured → {after.status} "
                f"{_shown(after.amount_captured, after.currency)} captured."
            )
        _close(locked, State.FIXED_FROM_PROVIDER, user, message)
    return FixOutcome(locked, after, message)


def mismatch_resolve(*, mismatch: ReconciliationMismatch, user, comment: str) -> FixOutcome:
    """Close a mismatch settled outside the platform, with staff's comment (required)."""
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed("Say what was done: a comment is required.", param="comment")
    actor = f"admin:{user.get_username()}"
    with transaction.atomic():
        locked = ReconciliationMismatch.objects.select_for_update().get(pk=mismatch.pk)
        _require_open(locked)
        _close(locked, State.RESOLVED, user, comment)
        payment = None
        if locked.payment_id:
            payment = Payment.objects.get(pk=locked.payment_id)
            payment_services.payment_event_record(
                payment=payment,
                type="reconciliation_resolved",
                source=PaymentEvent.Source.ADMIN,
                actor=actor,
                data={
                    "run": locked.run_id,
                    "mismatch": locked.pk,
                    "kind": locked.kind,
                    "comment": comment[:1000],
                },
            )
    return FixOutcome(locked, payment, f"Mismatch {locked.pk} resolved: {comment}")


def _require_open(mismatch: ReconciliationMismatch) -> None:
    if mismatch.state != State.OPEN:
        raise InvalidState(f"Mismatch {mismatch.pk} is already {mismatch.get_state_display()}.")


def _close(mismatch: ReconciliationMismatch, state: str, user, text: str) -> None:
    mismatch.state = state
    mismatch.resolution = text[:5000]
    mismatch.resolved_by = user
    mismatch.resolved_at = timezone.now()
    mismatch.save(update_fields=["state", "resolution", "resolved_by", "resolved_at"])


def _values(payment: Payment) -> dict:
    return {name: getattr(payment, name) for name in _PAYMENT_FIELDS}


def _provider_view(
    mismatch: ReconciliationMismatch, payment: Payment
) -> tuple[ProviderPayment | None, bool]:
    """
    The provider's record of the payment (None: it has none) and whether it is fresh.
    Asked afresh when the provider's API is on; else the run's report snapshot.
    """
    run = mismatch.run
    if run.source == ReconciliationRun.Source.API or providers.provider_enabled(run.provider):
        provider_payment_id = payment.provider_payment_id or mismatch.provider_payment_id
        if not provider_payment_id:
            return None, True  # the provider never gave it an id, and has no record naming it
        try:
            remote = providers.get_provider(run.provider).payment_retrieve(provider_payment_id)
        except ProviderDeclined as exc:
            if exc.code in ("resource_missing", "not_found"):
                return None, True
            raise InvalidState(f"The provider refused to show the payment: {exc.message}") from exc
        except ProviderError as exc:
            raise ProviderUnavailable(f"The provider could not be reached: {exc.message}") from exc
        return replace(remote, reference=payment.pk), True
    theirs = mismatch.theirs
    if theirs is None:
        return None, False
    return (
        ProviderPayment(
            provider_payment_id=theirs["provider_payment_id"],
            reference=payment.pk,
            status=theirs["status"],
            amount=Decimal(theirs["amount"]),
            currency=theirs["currency"],
            amount_captured=Decimal(theirs["amount_captured"] or 0),
            failure_code=theirs.get("failure_code", ""),
            failure_message=theirs.get("failure_message", ""),
        ),
        False,
    )


def _payment_take(
    payment: Payment, remote: ProviderPayment | None, *, actor: str, reason: str
) -> Payment:
    """Our payment as the provider has it: a normal move if allowed, else a correction."""
    source = PaymentEvent.Source.ADMIN
    if remote is not None:
        ours = _PROVIDER_VIEW.get(payment.status, payment.status)
        same_money = (
            remote.currency.upper() == payment.currency
            and remote.amount == payment.amount
            and not (
                payment.provider_payment_id
                and remote.provider_payment_id
                and remote.provider_payment_id != payment.provider_payment_id
            )
        )
        if (
            remote.status != ours
            and same_money
            and payment_services.payment_can_transition(payment.status, remote.status)
        ):
            try:
                synced = payment_services.payment_sync_from_provider(
                    provider=payment.provider, remote=remote, source=source, actor=actor
                )
            except payment_services.ProviderMismatch as exc:
                raise InvalidState(str(exc)) from exc
            return synced or payment
    return payment_services.payment_correct_from_provider(
        payment=payment, remote=remote, actor=actor, reason=reason, source=source
    )


def _refund_fix(mismatch: ReconciliationMismatch, user, actor: str) -> FixOutcome:
    refund = Refund.objects.get(pk=mismatch.refund_id)
    theirs = mismatch.theirs
    if theirs is None:
        raise InvalidState(
            f"The provider has no record of refund {refund.pk}: settle it with the provider "
            "(a pending refund is sent again by the sweep), then mark the mismatch resolved."
        )
    if refund.status != RefundStatus.PENDING:
        raise InvalidState(
            f"Refund {refund.pk} is {refund.status} here and {theirs['status']} at the "
            "provider: a settled refund is never reversed automatically. Settle it by hand, "
            "then mark the mismatch resolved."
        )
    remote = ProviderRefund(
        provider_refund_id=theirs["provider_refund_id"],
        provider_payment_id=theirs["provider_payment_id"],
        status=theirs["status"],
        amount=Decimal(theirs["amount"]),
        currency=theirs["currency"],
        failure_reason=theirs.get("failure_reason", ""),
        reference=refund.pk,
    )
    with transaction.atomic():
        locked = ReconciliationMismatch.objects.select_for_update().get(pk=mismatch.pk)
        _require_open(locked)
        try:
            payment_services.refund_sync_from_provider(
                provider=refund.provider,
                remote=remote,
                source=PaymentEvent.Source.ADMIN,
                actor=actor,
            )
        except payment_services.ProviderMismatch as exc:
            raise InvalidState(str(exc)) from exc
        refund.refresh_from_db()
        message = f"Refund {refund.pk} took the provider's state: {refund.status}."
        _close(locked, State.FIXED_FROM_PROVIDER, user, message)
    payment = Payment.objects.get(pk=refund.payment_id)
    return FixOutcome(locked, payment, message)
