from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from payments import pages
from payments.admin_login import admin_login
from payments.exception_handlers import json_page_not_found
from payments.sandbox import views as sandbox_views
from payments_project import health, metrics

urlpatterns = [
    # Before the admin's own URLs: its login, with a per-address limit on attempts.
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("payments.urls")),
    path("api/v1/", include("webhooks.api_urls")),
    path("api/v1/", include("billing.api_urls")),
    path("api/v1/", include("subscriptions.api_urls")),
    path("webhooks/", include("webhooks.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("pay/<str:payment_id>", pages.pay_link, name="pay-link"),
    path(
        "sandbox/checkout/<str:sandbox_payment_id>", sandbox_views.checkout, name="sandbox-checkout"
    ),
    path(
        "sandbox/checkout/<str:sandbox_payment_id>/confirm",
        sandbox_views.confirm,
        name="sandbox-confirm",
    ),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics.metrics_view, name="metrics"),
    # Unknown machine-facing URLs answer in the error shape even with DEBUG on, where
    # Django would otherwise render its HTML 404 page.
    re_path(r"^(api|webhooks|health)/", json_page_not_found),
]

handler400 = "payments.exception_handlers.json_bad_request"
handler404 = "payments.exception_handlers.json_page_not_found"
handler500 = "payments.exception_handlers.json_server_error"
