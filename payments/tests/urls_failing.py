"""A URLconf with views that fail on purpose, for the error-shape tests."""

from django.urls import path
from rest_framework.views import APIView

from payments_project.urls import handler404, handler500, urlpatterns  # noqa: F401


class BoomApi(APIView):
    def get(self, request):
        raise RuntimeError("boom: internal detail")


def plain_boom(request):
    raise RuntimeError("plain boom")


urlpatterns = [
    path("api/v1/boom", BoomApi.as_view()),
    path("api/v1/plain-boom", plain_boom),
    *urlpatterns,
]
