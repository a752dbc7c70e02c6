"""
The bench's helper processes, each started by `bench/run.py` as a process of its own:

    python -m bench.servers receiver --port 8801 --log FILE
        The merchant's callback receiver: answers 200 to every POST and appends
        `<arrival unix time> <object id> <webhook-id>` to FILE, one line per callback.
    python -m bench.servers stripe --delay 0.3
        The fake Stripe API of the tests (payments/tests/fakes/stripe_server.py), answering
        every request after `--delay` seconds; prints its URL on the first line.
    python -m bench.servers deliver-ref --url URL --count N --procs 4
        Scenario 5's reference: N callbacks signed (Standard Webhooks) and POSTed to the
        receiver by `--procs` processes with keep-alive sessions, nothing else (no Celery,
        no database). Prints JSON: deliveries/s and the round trip's p50/p99.
    python -m bench.servers scan-ref --db URL --since ISO --until ISO
        Scenario 6's reference: one streaming pass (server-side cursors) over our sandbox
        payments of the range and the sandbox's own records, merged by our id and compared
        (status, amount, currency). Prints JSON: rows read, mismatches, seconds.
"""

import argparse
import json
import signal
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _out(data: dict) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def _wait_for_term() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1)


# --- The callback receiver ----------------------------------------------------------------


def receiver(port: int, log_path: str) -> None:
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115  (for the life of the process)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this, Nagle's algorithm holds the
        # second until the client's delayed ACK, 40 ms later.
        disable_nagle_algorithm = True

        def do_POST(self):
            arrived = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            try:
                object_id = json.loads(body)["data"]["object"]["id"]
            except (ValueError, KeyError, TypeError):
                object_id = "-"
            with lock:
                log.write(f"{arrived:.6f} {object_id} {self.headers.get('webhook-id', '-')}\n")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _out({"url": f"http://127.0.0.1:{port}"})
    _wait_for_term()
    server.shutdown()


# --- The slow provider --------------------------------------------------------------------


def stripe(delay: float, secret_key: str) -> None:
    from payments.tests.fakes.stripe_server import FakeStripe

    fake = FakeStripe(secret_key=secret_key).start()
    fake.delay(delay)
    _out({"url": fake.url})
    _wait_for_term()
    fake.stop()


# --- Scenario 5's reference: signing and POSTing, nothing else -----------------------------


def _deliver_share(url: str, count: int, secret: str, offset: int) -> list[float]:
    import requests

    from payments.signing import webhook_headers

    session = requests.Session()
    took = []
    for i in range(count):
        started = time.perf_counter()
        event_id = f"evt_ref_{offset + i}"
        body = json.dumps(
            {
                "id": event_id,
                "type": "payment.succeeded",
                "created": int(time.time()),
                "data": {"object": _sample_payment(f"pay_ref_{offset + i}")},
            },
            separators=(",", ":"),
        )
        headers = {"Content-Type": "application/json", "User-Agent": "bench-ref/1"}
        headers.update(webhook_headers(secret, event_id, body))
        response = session.post(url, data=body.encode(), headers=headers, timeout=10)
        response.raise_for_status()
        took.append(time.perf_counter() - started)
    return took


def _sample_payment(payment_id: str) -> dict:
    # The shape (and about the size) of the payment object a callback carries.
    return {
        "id": payment_id, "object": "payment", "status": "succeeded", "amount": "599.00",
        "currency": "RUB", "amount_captured": "599.00", "amount_refunded": "0.00",
        "capture": True, "provider": "sandbox", "provider_payment_id": "sbx_pay_0123456789",
        "checkout_url": f"http://127.0.0.1:8800/pay/{payment_id}", "customer": None,
        "description": "Bench payment", "order_id": "", "metadata": {"bench": "1"},
        "return_url": "https://shop.example/thanks", "payment_method_types": ["card"],
        "card_brand": "visa", "card_last4": "4242", "failure_code": None,
        "failure_message": None, "livemode": False, "created": "2026-01-01T00:00:00.000000Z",
        "updated": "2026-01-01T00:00:00.000000Z", "completed_at": "2026-01-01T00:00:01.000000Z",
    }  # fmt: skip


def deliver_ref(url: str, count: int, procs: int) -> None:
    from payments.signing import webhook_secret_generate

    secret = webhook_secret_generate()
    shares = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
    started = time.perf_counter()
    with ProcessPoolExecutor(procs) as pool:
        offsets = [sum(shares[:i]) for i in range(procs)]
        results = list(pool.map(_deliver_share, [url] * procs, shares, [secret] * procs, offsets))
    seconds = time.perf_counter() - started
    took = sorted(t for share in results for t in share)
    _out(
        {
            "count": count,
            "procs": procs,
            "seconds": seconds,
            "per_second": count / seconds,
            "p50_ms": statistics.median(took) * 1000,
            "p99_ms": took[min(len(took) - 1, int(len(took) * 0.99))] * 1000,
        }
    )


# --- Scenario 6's reference: both sides streamed and compared in raw SQL --------------------

_SANDBOX_STATUS = {"open": "pending", "requires_confirmation": "pending"}
_OURS_AS_SANDBOX = {"partially_refunded": "succeeded", "refunded": "succeeded"}


def scan_ref(db: str, since: str, until: str) -> None:
    import psycopg

    started = time.perf_counter()
    ours_sql = (
        "SELECT id, status, amount, currency FROM payments_payment "
        "WHERE provider = 'sandbox' AND created_at >= %s::timestamptz "
        "AND created_at < %s::timestamptz ORDER BY id"
    )
    theirs_sql = (
        "SELECT reference, status, amount, currency FROM payments_sandboxpayment "
        "WHERE created_at >= %s::timestamptz AND created_at < %s::timestamptz + interval '1 day' "
        "ORDER BY reference"
    )
    rows = mismatches = 0
    with psycopg.connect(db) as ours_db, psycopg.connect(db) as theirs_db:
        ours = ours_db.cursor(name="ours")
        theirs = theirs_db.cursor(name="theirs")
        ours.itersize = theirs.itersize = 5000
        ours.execute(ours_sql, [since, until])
        theirs.execute(theirs_sql, [since, until])
        mine, other = next(ours, None), next(theirs, None)
        while mine is not None or other is not None:
            rows += 1
            if other is None or (mine is not None and mine[0] < other[0]):
                mismatches += mine[1] not in ("pending", "failed", "canceled")
                mine = next(ours, None)
            elif mine is None or other[0] < mine[0]:
                mismatches += 1 if other[0].startswith("pay_") else 0
                other = next(theirs, None)
            else:
                status = _OURS_AS_SANDBOX.get(mine[1], mine[1])
                theirs_status = _SANDBOX_STATUS.get(other[1], other[1])
                mismatches += (status, mine[2], mine[3]) != (theirs_status, other[2], other[3])
                rows += 1
                mine, other = next(ours, None), next(theirs, None)
    _out({"rows": rows, "mismatches": mismatches, "seconds": time.perf_counter() - started})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("receiver")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p = sub.add_parser("stripe")
    p.add_argument("--delay", type=float, default=0.3)
    p.add_argument("--secret-key", default="sk_test_bench")
    p = sub.add_parser("deliver-ref")
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--procs", type=int, default=4)
    p = sub.add_parser("scan-ref")
    p.add_argument("--db", required=True)
    p.add_argument("--since", required=True)
    p.add_argument("--until", required=True)
    args = parser.parse_args()
    if args.command == "receiver":
        receiver(args.port, args.log)
    elif args.command == "stripe":
        stripe(args.delay, args.secret_key)
    elif args.command == "deliver-ref":
        deliver_ref(args.url, args.count, args.procs)
    else:
        scan_ref(args.db, args.since, args.until)


if __name__ == "__main__":
    main()
