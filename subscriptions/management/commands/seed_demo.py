import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing.ledger import ledger_book_bulk
from billing.models import LedgerEntry, LedgerTransaction
from payments.demo_bulk import (
    BULK_PROVIDERS,
    MoneyMove,
    demo_payments_bulk,
    demo_payments_bulk_count,
    tables_analyze,
)
from payments.progress import progress_bar
from subscriptions.demo import demo_seed_all


class Command(BaseCommand):
    help = (
        "Create (or refresh) the demo merchant, its keys, customers, plans and a staff login. "
        "Idempotent. With --payments N, also make sure the demo merchant has N bulk demo "
        "payments (three months of history: refunds, credits, timelines, the sandbox's "
        "records and ledger bookings; no invoices, merchant callbacks or webhooks): only "
        "the missing ones are added, so a rerun adds nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="Print one JSON object."
        )
        parser.add_argument(
            "--payments",
            type=int,
            default=0,
            metavar="N",
            help="Bulk demo payments the demo merchant should have (default 0: none added). "
            "A million takes a few minutes on PostgreSQL.",
        )
        parser.add_argument(
            "--provider",
            choices=BULK_PROVIDERS,
            help="Take every added bulk payment through this provider instead of the usual "
            "mix (e.g. a million sandbox payments to reconcile offline).",
        )

    def handle(self, *args, as_json, payments, provider, **options):
        if payments < 0:
            raise CommandError(f"--payments must be 0 or more, not {payments}.")
        demo = demo_seed_all()
        bulk = self._bulk(demo.merchant, payments, provider) if payments else None
        if as_json:
            data = {
                "merchant": demo.merchant.id,
                "secret_key": demo.secret_key,
                "publishable_key": demo.publishable_key,
                "staff_username": demo.staff_username,
                "staff_password": demo.staff_password,
                # The Support and Finance role logins: username -> password.
                "role_users": demo.role_users,
            }
            if bulk is not None:
                data["bulk_payments"] = bulk
            self.stdout.write(json.dumps(data))
            return
        base = settings.PUBLIC_BASE_URL
        password = demo.staff_password or "(changed since seeding; unchanged by this run)"
        self.stdout.write(
            self.style.SUCCESS(f"Demo merchant: {demo.merchant.name} ({demo.merchant.id})")
        )
        self.stdout.write(f"  Secret key:      {demo.secret_key}")
        self.stdout.write(f"  Publishable key: {demo.publishable_key}")
        self.stdout.write(
            f"Staff login: {base}/admin/  user: {demo.staff_username}  password: {password}"
        )
        for username, role_password in demo.role_users.items():
            shown = role_password or "(changed since seeding)"
            self.stdout.write(f"  Role login: user: {username}  password: {shown}")
        self.stdout.write(
            f"Try: curl -H 'Authorization: Bearer {demo.secret_key}' {base}/api/v1/customers"
        )
        if bulk is not None:
            self.stdout.write(
                f"Bulk demo payments: {bulk['added']:,} added in {bulk['seconds']:.1f}s "
                f"({bulk['per_second']:,}/s), {bulk['total']:,} in all; "
                f"{bulk['ledger_transactions']:,} ledger transactions booked."
            )

    def _bulk(self, merchant, wanted: int, provider: str | None) -> dict:
        have = demo_payments_bulk_count(merchant=merchant)
        missing = max(0, wanted - have)
        bar = _ProgressBar(self.stderr, missing)
        booked = 0

        def book(moves: list[MoneyMove]) -> None:
            nonlocal booked
            booked += ledger_book_bulk(moves)

        started = time.monotonic()
        try:
            added = demo_payments_bulk(
                merchant=merchant, count=missing, book=book, progress=bar.update, provider=provider
            )
            if added:
                tables_analyze([LedgerTransaction, LedgerEntry])
        except Exception as exc:
            raise CommandError(
                f"Bulk demo payments stopped after {bar.done:,} of {missing:,} (whole batches "
                f"are kept: run the command again to add the rest): {exc}"
            ) from exc
        finally:
            bar.close()
        seconds = time.monotonic() - started
        return {
            "added": added,
            "total": have + added,
            "ledger_transactions": booked,
            "seconds": round(seconds, 1),
            "per_second": round(added / seconds) if added else 0,
        }


class _ProgressBar:
    """`[#####     ] 350,000/1,000,000  12,345/s` on one line of stderr, redrawn in place."""

    def __init__(self, stream, total: int):
        self.stream, self.total, self.done = stream, total, 0
        self.started = time.monotonic()
        if total:
            self.update(0, total)

    def update(self, done: int, total: int) -> None:
        self.done = done
        rate = done / max(time.monotonic() - self.started, 1e-6)
        self.stream.write(
            f"\r{progress_bar(done, total)} {done:,}/{total:,}  {rate:,.0f}/s", ending=""
        )
        self.stream.flush()

    def close(self) -> None:
        if self.total:
            self.stream.write("")  # leave the bar's last state on its own line
