from django.urls import path

from payments import apis

urlpatterns = [
    path("config", apis.ConfigApi.as_view(), name="config"),
    path("customers", apis.CustomerListCreateApi.as_view(), name="customer-list"),
    path("customers/<str:customer_id>", apis.CustomerDetailApi.as_view(), name="customer-detail"),
]
