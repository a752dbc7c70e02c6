"""
The bench's WSGI application: the project's, unchanged, for every path but `/bench/ref/`,
which goes to the same URLs through a handler with no middleware at all, so the reference
views are bare Django (URL resolver, request, response) and nothing else.
"""

import os

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

project = get_wsgi_application()


class BareWSGIHandler(WSGIHandler):
    def load_middleware(self, is_async=False):
        stack = settings.MIDDLEWARE
        settings.MIDDLEWARE = []
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = stack


bare = BareWSGIHandler()


def application(environ, start_response):
    if environ.get("PATH_INFO", "").startswith("/bench/ref/"):
        return bare(environ, start_response)
    return project(environ, start_response)
