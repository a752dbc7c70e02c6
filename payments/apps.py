from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate, post_save


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from payments.staff import staff_roles_sync

        # The Support and Finance groups follow payments/staff.py after every migrate.
        post_migrate.connect(staff_roles_sync, sender=self, dispatch_uid="staff_roles_sync")

        from payments.models import APIKey, Merchant
        from payments.selectors import api_keys_forget

        # Authentication keeps keys briefly; a revoked key or a disabled merchant is
        # looked up again at once in the process that saved it.
        for model in (APIKey, Merchant):
            for signal in (post_save, post_delete):
                signal.connect(
                    api_keys_forget, sender=model, dispatch_uid=f"forget-{model.__name__}"
                )

        from payments_project import metrics

        # Prometheus counters: the outcomes listener and Celery's task signals.
        metrics.install()
