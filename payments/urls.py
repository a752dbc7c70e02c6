from django.urls import path

from payments import apis

urlpatterns = [
    path("config", apis.ConfigApi.as_view(), name="config"),
    path("customers", apis.CustomerListCreateApi.as_view(), name="customer-list"),
    path("customers/<str:customer_id>", apis.CustomerDetailApi.as_view(), name="customer-detail"),
    path(
        "customers/<str:customer_id>/credits",
        apis.CustomerCreditListCreateApi.as_view(),
        name="customer-credits",
    ),
    path(
        "customer_sessions", apis.CustomerSessionCreateApi.as_view(), name="customer-session-create"
    ),
    path("payments", apis.PaymentListCreateApi.as_view(), name="payment-list"),
    path("payments/<str:payment_id>", apis.PaymentDetailApi.as_view(), name="payment-detail"),
    path(
        "payments/<str:payment_id>/events", apis.PaymentEventsApi.as_view(), name="payment-events"
    ),
    path(
        "payments/<str:payment_id>/cancel", apis.PaymentCancelApi.as_view(), name="payment-cancel"
    ),
    path(
        "payments/<str:payment_id>/capture",
        apis.PaymentCaptureApi.as_view(),
        name="payment-capture",
    ),
    path(
        "payments/<str:payment_id>/refunds",
        apis.PaymentRefundListCreateApi.as_view(),
        name="payment-refunds",
    ),
    path("refunds", apis.RefundListApi.as_view(), name="refund-list"),
    path("refunds/<str:refund_id>", apis.RefundDetailApi.as_view(), name="refund-detail"),
]
