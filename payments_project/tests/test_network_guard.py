import socket

import pytest


def test_connections_beyond_localhost_fail_the_test():
    with pytest.raises(AssertionError, match="203.0.113.7"):
        socket.create_connection(("203.0.113.7", 443), timeout=1)


def test_loopback_connections_are_allowed():
    with socket.create_connection(("127.0.0.1", 6379), timeout=1) as redis:
        redis.sendall(b"PING\r\n")
        assert redis.recv(16).startswith(b"+PONG")
