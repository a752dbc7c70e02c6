"""
A merchant's webhook receiver for tests: a small HTTP server on 127.0.0.1 that records what
it is sent. Fixtures `receivers` (make several, scripted) and `receiver` (one that answers
200), for any app's tests (registered as a plugin in the root conftest).
"""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """
    A webhook receiver on 127.0.0.1 that records every request and answers from a script
    of statuses (the last one repeats), each optionally `(status, body)`; a `delay` holds
    the answer back (for timeouts and races).
    """

    def __init__(self, script=(200,), delay: float = 0.0):
        self.script = list(script)
        self.delay = delay
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, reply = receiver._record(Received(self.path, headers, body))
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    if 300 <= status < 400:
                        self.send_header("Location", "/somewhere-else")
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass  # the sender gave up waiting (a timeout test)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def answer(self, *script) -> None:
        with self._lock:
            self.script = list(script)

    def _record(self, request: Received) -> tuple[int, bytes]:
        with self._lock:
            self.received.append(request)
            count = len(self.received)
            step = self.script[0] if len(self.script) == 1 else self.script.pop(0)
        if isinstance(step, tuple):
            return step
        return step, f"answer {count}: {step}".encode()

    def event_ids(self) -> list[str]:
        return [request.headers["webhook-id"] for request in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers(settings):
    """Make receivers on 127.0.0.1 (which endpoints may only use with private URLs allowed)."""
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    made: list[Receiver] = []

    def make(*script, delay: float = 0.0) -> Receiver:
        receiver = Receiver(script or (200,), delay=delay)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def receiver(receivers) -> Receiver:
    return receivers(200)
