"""
The admin login, with a per-address rate limit on its POSTs on top of django-axes.

Axes locks one username from one address after a few failures; this bounds how many
passwords one address may try at all, across usernames (credential stuffing), whether
they fail or not. Showing the form is never limited.
"""

import math

from django.conf import settings
from django.contrib import admin
from django.http import HttpResponse
from django.utils.html import escape

from payments.network import client_ip
from payments.throttling import rate_take


def admin_login(request, **kwargs):
    if request.method == "POST":
        wait = rate_take("admin-login", client_ip(request), settings.ADMIN_LOGIN_RATE_LIMIT)
        if wait:
            seconds = math.ceil(wait)
            response = HttpResponse(
                "<!doctype html><title>Too many login attempts</title>"
                "<h1>Too many login attempts</h1>"
                f"<p>Too many login attempts from your address. Try again in {escape(seconds)}"
                " seconds.</p>",
                status=429,
            )
            response["Retry-After"] = str(seconds)
            return response
    return admin.site.login(request, **kwargs)
