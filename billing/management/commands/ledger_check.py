from django.core.management.base import BaseCommand, CommandError

from billing.ledger import ledger_counts, ledger_verify


class Command(BaseCommand):
    help = (
        "Prove the ledger sound: every transaction balances, every captured payment's ledger "
        "net is its captured amount less refunds, every credit balance matches the ledger. "
        "Exits non-zero, listing each problem, when anything disagrees."
    )

    def handle(self, *args, **options):
        problems = ledger_verify()
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            raise CommandError(
                f"Ledger check FAILED: {len(problems)} problem{'s' if len(problems) != 1 else ''}"
                " (listed above)."
            )
        counts = ledger_counts()
        self.stdout.write(
            self.style.SUCCESS(
                f"Ledger OK: {counts.transactions} transactions, {counts.entries} entries, "
                f"{counts.payments} payments checked"
            )
        )
