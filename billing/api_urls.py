from django.urls import path

from billing import apis

urlpatterns = [
    path("invoices", apis.InvoiceListApi.as_view(), name="invoice-list"),
    path("invoices/<str:invoice_id>", apis.InvoiceDetailApi.as_view(), name="invoice-detail"),
    path("invoices/<str:invoice_id>/pdf", apis.InvoicePdfApi.as_view(), name="invoice-pdf"),
]
