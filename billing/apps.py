from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from billing.ledger import ledger_book
        from payments import outcomes

        # Every money outcome payments announce is booked in the ledger, in the same
        # transaction as the change, so the books never lag or lead the money.
        outcomes.listen(ledger_book)
