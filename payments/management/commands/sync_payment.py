from django.core.management.base import BaseCommand, CommandError

from payments import services
from payments.errors import PaymentError
from payments.models import Payment


class Command(BaseCommand):
    help = (
        "Ask the payment's provider for its state now and apply it through the state machine "
        "(what a webhook would do). Prints the status before and after."
    )

    def add_arguments(self, parser):
        parser.add_argument("payment_id")

    def handle(self, *args, payment_id, **options):
        payment = Payment.objects.filter(pk=payment_id).first()
        if payment is None:
            raise CommandError(f"No such payment: {payment_id}")
        before = payment.status
        try:
            payment = services.payment_refresh_from_provider(
                payment=payment, actor="manage.py sync_payment"
            )
        except (PaymentError, services.ProviderMismatch) as exc:
            raise CommandError(f"{payment_id}: {getattr(exc, 'message', exc)}") from None
        change = "unchanged" if payment.status == before else f"{before} -> {payment.status}"
        self.stdout.write(f"{payment.pk} ({payment.provider}): {change}")
