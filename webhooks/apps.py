from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from payments import outcomes
        from webhooks.callbacks import event_record

        # Every outcome payments announce becomes an event in the same transaction.
        outcomes.listen(event_record)
