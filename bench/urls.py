"""The project's URLs, and the reference views under `/bench/ref/` (`bench/reference.py`)."""

from django.urls import path

from bench import reference
from payments_project.urls import handler400, handler404, handler500  # noqa: F401
from payments_project.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("bench/ref/payments/<str:merchant_id>", reference.payment_create),
    path("bench/ref/payments/<str:merchant_id>/list", reference.payment_list),
    path("bench/ref/webhooks/<str:provider>", reference.webhook_ingest),
    *project_urlpatterns,
]
