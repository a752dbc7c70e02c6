from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from payments.staff import staff_roles_sync

        # The Support and Finance groups follow payments/staff.py after every migrate.
        post_migrate.connect(staff_roles_sync, sender=self, dispatch_uid="staff_roles_sync")

        from payments_project import metrics

        # Prometheus counters: the outcomes listener and Celery's task signals.
        metrics.install()
