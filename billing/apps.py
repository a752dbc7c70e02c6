from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from billing.ledger import ledger_book
        from billing.services import invoice_on_outcome
        from payments import outcomes

        # Every money outcome payments announce is booked in the ledger, in the same
        # transaction as the change, so the books never lag or lead the money.
        outcomes.listen(ledger_book)
        # Every succeeded payment is invoiced, and every refund credited, likewise.
        outcomes.listen(invoice_on_outcome)
