from django.urls import path

from subscriptions import apis

urlpatterns = [
    path("plans", apis.PlanListApi.as_view(), name="plan-list"),
    path("subscriptions", apis.SubscriptionListCreateApi.as_view(), name="subscription-list"),
    path(
        "subscriptions/<str:subscription_id>",
        apis.SubscriptionDetailApi.as_view(),
        name="subscription-detail",
    ),
    path(
        "subscriptions/<str:subscription_id>/cancel",
        apis.SubscriptionCancelApi.as_view(),
        name="subscription-cancel",
    ),
]
