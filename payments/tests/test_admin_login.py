"""The admin login resists password guessing (django-axes)."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_user():
    return get_user_model().objects.create_user(
        username="support", password="right-password-123", is_staff=True
    )


def _login(client, password, address="203.0.113.7"):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": "support", "password": password},
        REMOTE_ADDR=address,
    )


def test_guessing_locks_the_account_out_from_that_address(client, staff_user, settings):
    settings.AXES_FAILURE_LIMIT = 5

    for _ in range(4):
        assert _login(client, "guess").status_code == 200  # the form again, with an error
    assert _login(client, "guess").status_code == 429  # the fifth failure locks

    locked = _login(client, "right-password-123")
    assert locked.status_code == 429  # even the right password, until the cool-off
    # The same person from elsewhere is not locked out by someone guessing at them.
    assert _login(client, "right-password-123", address="198.51.100.9").status_code == 302


def test_a_successful_login_resets_the_count(client, staff_user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    _login(client, "guess")
    _login(client, "guess")
    assert _login(client, "right-password-123").status_code == 302
    client.logout()

    _login(client, "guess")
    _login(client, "guess")
    assert _login(client, "right-password-123").status_code == 302


@time_machine.travel(datetime(2026, 12, 2, 12, 0, 5, tzinfo=UTC), tick=False)
def test_one_address_may_only_try_so_many_passwords_whatever_the_usernames(client, settings):
    # The clock stands still 5 s into a minute: the four attempts share one window.
    settings.ADMIN_LOGIN_RATE_LIMIT = "3/m"
    settings.AXES_FAILURE_LIMIT = 100

    for name in ("ann", "bob", "cid"):
        form = client.post(
            "/admin/login/", {"username": name, "password": "x"}, REMOTE_ADDR="203.0.113.7"
        )
        assert form.status_code == 200  # the form again, with its error

    refused = client.post(
        "/admin/login/", {"username": "dan", "password": "x"}, REMOTE_ADDR="203.0.113.7"
    )
    assert refused.status_code == 429
    assert refused["Retry-After"] == "55"
    assert b"Too many login attempts" in refused.content
    # The form itself still shows, and another address is not affected.
    assert client.get("/admin/login/", REMOTE_ADDR="203.0.113.7").status_code == 200
    other = client.post(
        "/admin/login/", {"username": "dan", "password": "x"}, REMOTE_ADDR="198.51.100.9"
    )
    assert other.status_code == 200
