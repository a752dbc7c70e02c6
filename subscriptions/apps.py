from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from payments import outcomes
        from subscriptions.services import subscription_on_outcome

        # Payments of subscription invoices move their subscriptions, in the same
        # transaction as the payment's change.
        outcomes.listen(subscription_on_outcome)
