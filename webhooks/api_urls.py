from django.urls import path

from webhooks import apis

urlpatterns = [
    path("events", apis.EventListApi.as_view(), name="event-list"),
    path("events/<str:event_id>", apis.EventDetailApi.as_view(), name="event-detail"),
    path("webhook_endpoints", apis.EndpointListCreateApi.as_view(), name="endpoint-list"),
    path(
        "webhook_endpoints/<str:endpoint_id>",
        apis.EndpointDetailApi.as_view(),
        name="endpoint-detail",
    ),
    path(
        "webhook_endpoints/<str:endpoint_id>/rotate_secret",
        apis.EndpointRotateSecretApi.as_view(),
        name="endpoint-rotate-secret",
    ),
]
