from django.core.management.base import BaseCommand, CommandError

from webhooks import services
from webhooks.models import InboundWebhook


class Command(BaseCommand):
    help = "Process stored inbound webhooks again: the failed ones, or the ones named."

    def add_arguments(self, parser):
        parser.add_argument("--failed", action="store_true", help="Every webhook that failed.")
        parser.add_argument(
            "--id", dest="ids", action="append", default=[], help="A webhook id (repeatable)."
        )

    def handle(self, *args, failed, ids, **options):
        if not failed and not ids:
            raise CommandError("Say which webhooks: --failed and/or --id ID.")
        targets = list(InboundWebhook.objects.filter(pk__in=ids).values_list("pk", flat=True))
        missing = set(ids) - set(targets)
        if missing:
            raise CommandError(f"No such inbound webhook: {', '.join(sorted(missing))}")
        if failed:
            targets += list(
                InboundWebhook.objects.filter(status=InboundWebhook.Status.FAILED)
                .order_by("received_at")
                .values_list("pk", flat=True)
            )
        outcomes: dict[str, int] = {}
        for webhook_id in dict.fromkeys(targets):
            try:
                webhook = services.webhook_process(webhook_id=webhook_id, force=True)
                outcome = webhook.status
            except Exception as exc:  # keep going; the row keeps the error
                outcome = "failed"
                self.stderr.write(f"{webhook_id}: {type(exc).__name__}: {exc}")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        summary = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items()))
        self.stdout.write(f"Reprocessed {sum(outcomes.values())} webhook(s): {summary or 'none'}")
        if outcomes.get("failed"):
            raise CommandError("Some webhooks failed again; see their errors in the admin.")
