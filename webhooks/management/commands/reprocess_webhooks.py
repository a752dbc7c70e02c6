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
        results = services.webhooks_reprocess(targets)
        failed = [pk for pk, status in results.items() if status == InboundWebhook.Status.FAILED]
        for webhook in InboundWebhook.objects.filter(pk__in=failed):
            self.stderr.write(f"{webhook.pk}: {webhook.error}")
        summary = services.reprocess_summary(results)
        self.stdout.write(f"Reprocessed {len(results)} webhook(s): {summary}")
        if failed:
            raise CommandError("Some webhooks failed again; see their errors in the admin.")
