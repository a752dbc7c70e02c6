"""Fixtures shared by every app's tests."""

import ipaddress
import socket
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from payments.tests.factories import APIKeyFactory, MerchantFactory

# Real-browser fixtures (`browser_page`) and merchant webhook receivers (`receiver`),
# available to every test module.
pytest_plugins = ["payments.tests.browser", "webhooks.tests.receivers"]


def _loopback_only(address) -> bool:
    if not isinstance(address, tuple):
        return True  # a Unix socket path: local by definition
    host = address[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@pytest.fixture(scope="session", autouse=True)
def _no_network_beyond_localhost():
    """
    Tests never reach a real provider or anything else off this machine: a connection to
    any non-loopback address fails the test that tried it.
    """
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def guarded(method):
        def connect(sock, address):
            if not _loopback_only(address):
                raise AssertionError(f"Test tried to open a connection to {address!r}")
            return method(sock, address)

        return connect

    socket.socket.connect = guarded(original_connect)
    socket.socket.connect_ex = guarded(original_connect_ex)
    yield
    socket.socket.connect = original_connect
    socket.socket.connect_ex = original_connect_ex


@pytest.fixture(scope="session", autouse=True)
def _require_postgresql(django_db_setup, django_db_blocker):
    # Row locks, concurrency and constraints behave differently on SQLite; a green run on
    # anything but PostgreSQL would prove little.
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.exit(f"The test suite needs PostgreSQL, got {connection.vendor}.", returncode=3)


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    from payments.selectors import api_keys_forget

    cache.clear()
    api_keys_forget()
    yield


@pytest.fixture
def merchant(db):
    return MerchantFactory()


@pytest.fixture
def other_merchant(db):
    return MerchantFactory(name="Other Shop")


def client_for(raw_key: str | None) -> APIClient:
    client = APIClient()
    if raw_key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def secret_key(merchant):
    return APIKeyFactory(merchant=merchant, kind="secret").raw_key


@pytest.fixture
def api(secret_key):
    """An API client acting for `merchant` with a secret key."""
    return client_for(secret_key)


@pytest.fixture
def publishable_api(merchant):
    return client_for(APIKeyFactory(merchant=merchant, kind="publishable").raw_key)


@pytest.fixture
def other_api(other_merchant):
    return client_for(APIKeyFactory(merchant=other_merchant, kind="secret").raw_key)


@pytest.fixture
def anonymous_api():
    return APIClient()


def task_sends(callbacks) -> list:
    """The on-commit callbacks (from `django_capture_on_commit_callbacks`) that queue a task."""
    return [c for c in callbacks if c.__qualname__ == "enqueue_on_commit.<locals>.send"]


def run_concurrently(count: int, work) -> list:
    """
    Call `work()` from `count` threads released at the same instant (a barrier), each on
    its own database connection, and return what they returned. For race tests; they
    need `@pytest.mark.django_db(transaction=True)` so each thread sees committed data.
    """
    barrier = threading.Barrier(count)
    results = []

    def run():
        try:
            barrier.wait()
            results.append(work())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
