"""
`python -m bench.capture` (bench/run.py runs it with the bench's environment): the SQL
statements and Redis commands of one real request of each measured kind, through the
whole stack in-process (Django's test client), as JSON on the last line of stdout.

BENCH_CAPTURE holds {"key": secret key, "webhooks": [[body, headers], [body, headers]]}.
Each kind is requested twice and the second is kept, so one-time work (connections, caches)
does not count.
"""

import json
import os
import sys
import time
import uuid

import django

django.setup()

import redis  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from bench.run import CREATE_BODY  # noqa: E402

_redis_calls: list[str] = []
_execute = redis.Redis.execute_command
_pipeline_execute = redis.client.Pipeline.execute


def _counted(self, *args, **options):
    _redis_calls.append(str(args[0]))
    return _execute(self, *args, **options)


def _counted_pipeline(self, *args, **options):
    _redis_calls.append("PIPELINE[" + ",".join(str(c[0][0]) for c in self.command_stack) + "]")
    return _pipeline_execute(self, *args, **options)


redis.Redis.execute_command = _counted
redis.client.Pipeline.execute = _counted_pipeline


def _one(send) -> dict:
    _redis_calls.clear()
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        response = send()
    took = (time.perf_counter() - started) * 1000
    return {
        "status": response.status_code,
        "ms": round(took, 2),
        "queries": [
            {"sql": " ".join(q["sql"].split())[:160], "ms": round(float(q["time"]) * 1000, 2)}
            for q in queries.captured_queries
        ],
        "redis": list(_redis_calls),
    }


def main() -> None:
    given = json.loads(os.environ["BENCH_CAPTURE"])
    client = Client(SERVER_NAME="127.0.0.1")
    auth = {"Authorization": f"Bearer {given['key']}"}

    def create():
        return client.post(
            "/api/v1/payments",
            data=json.dumps(CREATE_BODY),
            content_type="application/json",
            headers={**auth, "Idempotency-Key": f"capture-{uuid.uuid4()}"},
        )

    def ingest(body, headers):
        return lambda: client.post(
            "/webhooks/sandbox", data=body, content_type="application/json", headers=headers
        )

    def listing():
        return client.get("/api/v1/payments", headers=auth)

    result = {}
    for name, sends in [
        ("create payment", [create, create]),
        ("webhook ingest", [ingest(*w) for w in given["webhooks"]]),
        ("list payments (first page)", [listing, listing]),
    ]:
        _one(sends[0])
        result[name] = _one(sends[1])
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
