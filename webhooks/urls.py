from django.urls import path

from webhooks import views

urlpatterns = [
    path("<str:provider>", views.receive, name="webhook-receive"),
]
