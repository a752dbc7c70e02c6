"""bench/RESULTS.md from the results bench/run.py gathered (also in bench/out/results.json)."""

from pathlib import Path

TARGETS = {
    "create": "≥ 0.5 of the reference's requests/s, and p99 ≤ 50 ms, at 16 connections",
    "slow": "≥ 0.8 of scenario 1's requests/s (16 connections)",
    "webhooks": "≥ 0.5 of the reference's requests/s",
    "list": "deep page p50 ≤ 1.5 × first page p50",
    "reconcile": "≤ 60 s and ≤ 500 MB peak for 1,000,000 payments",
}


def _f(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}{suffix}"
    return str(value)


def _cpu(cpu: dict | None) -> str:
    if not cpu:
        return "–"
    parts = [cpu.get("gunicorn", 0), cpu.get("postgres", 0), cpu.get("worker", 0)]
    return f"{sum(parts):.1f} = " + " + ".join(f"{p:.1f}" for p in parts)


def _cpu_total(cpu: dict | None) -> float | None:
    return sum(cpu.values()) if cpu else None


def _met(ok) -> str:
    return "–" if ok is None else ("**met**" if ok else "**missed**")


def _runs_table(runs: list[dict], ref_runs: list[dict] | None = None) -> list[str]:
    lines = [
        "| run | req/s | p50 ms | p99 ms | requests | non-2xx | machine busy "
        "| CPU ms/request: web + PostgreSQL + worker | worker queue after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]

    def row(label, r):
        drain = r.get("drain")
        queue = ""
        if drain:
            queue = (
                f"emptied in {drain['seconds']} s"
                if drain["drained"]
                else f"{drain.get('purged', 0):,} tasks left after {drain['seconds']} s, dropped"
            )
        valid = "" if r.get("valid", True) else " (INVALID)"
        return (
            f"| {label}{valid} | {_f(r['rps'])} | {_f(r['p50_ms'])} | {_f(r['p99_ms'])} | "
            f"{r['requests']:,} | {r['non2xx']:,} | {r.get('machine_busy', 0):.0%} | "
            f"{_cpu(r.get('cpu_ms_per_request'))} | {queue} |"
        )

    for i, r in enumerate(runs, 1):
        lines.append(row(f"stack {i}", r))
        if ref_runs and i <= len(ref_runs):
            lines.append(row(f"reference {i}", ref_runs[i - 1]))
    return lines


def _targets(results: dict) -> list[tuple]:
    s = results.get("scenarios", {})
    rows = []
    one = s.get("1", {}).get("16")
    if one:
        m, ref = one["median"], one["ref_median"]
        ok = None
        if m["rps"] is not None and one["ratio"] is not None:
            ok = one["ratio"] >= 0.5 and m["p99_ms"] <= 50
        rows.append(
            (
                "1. create payment @16",
                f"{_f(m['rps'])} req/s, p99 {_f(m['p99_ms'])} ms",
                f"{_f(ref['rps'])} req/s, p99 {_f(ref['p99_ms'])} ms",
                _f(one["ratio"], 2),
                TARGETS["create"],
                ok,
                "create",
            )
        )
    two = s.get("2", {}).get("16")
    if two:
        r = two.get("vs_scenario_1")
        rows.append(
            (
                "2. create, provider 300 ms @16",
                f"{_f(two['median']['rps'])} req/s, p99 {_f(two['median']['p99_ms'])} ms",
                f"scenario 1: {_f(one['median']['rps']) if one else '–'} req/s",
                _f(r, 2),
                TARGETS["slow"],
                None if r is None else r >= 0.8,
                "create",
            )
        )
    three = s.get("3")
    if three:
        rows.append(
            (
                "3. webhook ingest @16",
                f"{_f(three['median']['rps'])} req/s, p99 {_f(three['median']['p99_ms'])} ms",
                f"{_f(three['ref_median']['rps'])} req/s",
                _f(three["ratio"], 2),
                TARGETS["webhooks"],
                None if three["ratio"] is None else three["ratio"] >= 0.5,
                "webhooks",
            )
        )
    four = s.get("4")
    if four:
        m = four["median"]
        rows.append(
            (
                f"4. list payments ({four['rows']:,} rows)",
                f"first {_f(m['first']['p50_ms'], 2)} ms, deep {_f(m['deep']['p50_ms'], 2)} ms",
                f"first {_f(m['ref_first']['p50_ms'], 2)} ms, deep "
                f"{_f(m['ref_deep']['p50_ms'], 2)} ms",
                f"deep/first {_f(four['deep_vs_first'], 2)}",
                TARGETS["list"],
                None if four["deep_vs_first"] is None else four["deep_vs_first"] <= 1.5,
                None,
            )
        )
    five = s.get("5")
    if five:
        rows.append(
            (
                "5. success → callback",
                f"p50 {_f(five['latency']['p50_ms'], 0)} ms, p99 "
                f"{_f(five['latency']['p99_ms'], 0)} ms; "
                f"{_f(five['deliveries_per_second'])} deliveries/s",
                f"{_f(five['ref']['per_second'])} deliveries/s, round trip p50 "
                f"{_f(five['ref']['p50_ms'])} ms",
                _f(five["ratio"], 2),
                "(no target: reported)",
                None,
                None,
            )
        )
    six = s.get("6")
    if six:
        ok = None
        if six["seconds"] is not None:
            ok = six["seconds"] <= 60 and six["peak_mb"] <= 500
        rows.append(
            (
                f"6. reconcile ({six['payments_total']:,} payments, "
                f"{six['sandbox_payments']:,} sandbox)",
                f"{_f(six['seconds'])} s, {_f(six['peak_mb'], 0)} MB",
                f"{_f(six['ref_seconds'])} s, {_f(six['ref_peak_mb'], 0)} MB",
                _f(ratio_of(six["ref_seconds"], six["seconds"]), 2),
                TARGETS["reconcile"],
                ok,
                None,
            )
        )
    return rows


def ratio_of(a, b):
    return a / b if a is not None and b else None


def _cpu_summary(s: dict) -> list[str]:
    rows = []
    for label, stack, ref in [
        ("1. create payment @16", s.get("1", {}).get("16", {}), "ref"),
        ("1. create payment @64", s.get("1", {}).get("64", {}), "ref"),
        ("2. create, provider 300 ms @16", s.get("2", {}).get("16", {}), None),
        ("3. webhook ingest @16", s.get("3", {}), "ref"),
    ]:
        if not stack.get("cpu_ms_per_request"):
            continue
        mine = stack["cpu_ms_per_request"]
        theirs = stack.get("ref_cpu_ms_per_request") if ref else None
        rows.append(
            f"| {label} | {_cpu(mine)} | {_cpu(theirs)} | "
            f"{_f(ratio_of(_cpu_total(theirs), _cpu_total(mine)), 2)} |"
        )
    four = s.get("4", {}).get("cpu_ms_per_request")
    if four:
        for page in ("first", "deep"):
            mine, theirs = four.get(page), four.get("ref_" + page)
            share = ratio_of(_cpu_total(theirs), _cpu_total(mine))
            rows.append(
                f"| 4. list, {page} page | {_cpu(mine)} | {_cpu(theirs)} | {_f(share, 2)} |"
            )
    if not rows:
        return []
    return [
        "",
        "What one request costs in CPU, whatever else the machine was doing (CPU time of the "
        "gunicorn workers, the PostgreSQL backends of the bench databases and the Celery "
        "worker during the run, divided by the requests answered; medians): on a shared "
        "machine this is the steadier number, and the ratio is what the throughput ratio "
        "would be on a machine the set had to itself with the CPU as the limit.",
        "",
        "| scenario | stack: total = web + PostgreSQL + worker (ms) | reference (ms) | "
        "reference/stack |",
        "| --- | --- | --- | ---: |",
        *rows,
    ]


def _profile_section(name: str, profile: dict) -> list[str]:
    if not profile or "error" in profile or not profile.get("samples"):
        return [f"No profile for {name}: {profile.get('error', 'no samples') if profile else ''}"]
    run = profile["run"]
    if "rps" in run:
        during = f"while wrk ran ({_f(run['rps'])} req/s, p50 {_f(run['p50_ms'])} ms under py-spy)"
    else:
        during = f"while it drained {run['count']:,} callbacks ({_f(run['per_second'])}/s)"
    lines = [
        f"{profile['samples']:,} samples over every process {during}.",
        "",
        "| share of samples | where (inclusive: a frame anywhere on the stack) |",
        "| ---: | --- |",
    ]
    lines += [
        f"| {pct:.1f} % | {label.strip() if not label.startswith('  ') else '↳ ' + label.strip()} |"
        for label, pct in profile["buckets"]
        if pct >= 0.5
    ]
    lines += [
        "",
        "Our functions, inclusive:",
        "",
        "```",
        *[f"{pct:5.1f} %  {frame}" for frame, pct in profile["top_ours"][:15]],
        "```",
        "",
        "Where the samples end (self time, any code):",
        "",
        "```",
        *[f"{pct:5.1f} %  {frame}" for frame, pct in profile["top_own"][:12]],
        "```",
    ]
    return lines


def report_write(results: dict, path: Path) -> None:
    plan = results["plan"]
    s = results.get("scenarios", {})
    machine = results.get("machine", {})
    gunicorn = results.get("gunicorn", {})
    quick = plan["name"] == "quick"
    out = ["# Benchmarks", ""]
    mode = (
        "**quick mode** (1 run × 3 s per measurement, a 20,000-payment seed: numbers are "
        "indicative only)"
        if quick
        else "full mode"
    )
    out.append(
        f"Written by `make bench` (`bench/run.py`) on {results.get('started', '?')}, {mode}; "
        f"the run took {_f(results.get('seconds'), 0)} s."
    )
    if results.get("failed"):
        out += ["", f"**The run stopped early:** {results['failed']}"]
    out += [
        "",
        f"Each measurement: {plan['runs']} run(s) of {plan['seconds']} s after a "
        f"{plan['warmup']} s warm-up, the stack and its reference alternating; the tables "
        "give the median. Any non-2xx answer or socket error makes a run invalid (counted by "
        "the wrk script, shown below) and invalid runs are left out of the medians.",
        "",
        "## Targets",
        "",
        "| scenario | measured (median) | reference ceiling | ratio | target | |",
        "| --- | --- | --- | ---: | --- | --- |",
    ]
    targets = _targets(results)
    out += [f"| {a} | {b} | {c} | {d} | {e} | {_met(ok)} |" for a, b, c, d, e, ok, _ in targets]
    missed = [t for t in targets if t[5] is False]
    out += _cpu_summary(s)
    out += [
        "",
        "## The machine and the set",
        "",
        f"- CPU: {machine.get('cpu')}, {machine.get('cores')} cores; "
        f"{machine.get('memory_gib')} GiB RAM; kernel {machine.get('kernel')} "
        f"({machine.get('os')})",
        f"- Python {machine.get('python')}; PostgreSQL {machine.get('postgresql')} "
        f"({', '.join(f'{k}={v}' for k, v in machine.get('postgresql_settings', {}).items())}); "
        f"Redis {machine.get('redis')}; {machine.get('wrk')}",
        f"- Packages: {', '.join(f'{k} {v}' for k, v in machine.get('versions', {}).items())}",
        f"- gunicorn `-c gunicorn.conf.py` (gthread), **{gunicorn.get('workers')} workers × "
        f"{gunicorn.get('threads')} threads**, chosen by the calibration below; its access log "
        "on (as configured), to a file. `DEBUG=false`, `LOG_LEVEL=WARNING` (so the app's own "
        "access line is not written), rate limits raised via env "
        "(`API_RATE_LIMIT=1000000/s`, `WEBHOOK_RATE_LIMIT=1000000/s`), Prometheus "
        "multiprocess metrics on a tmpfs as in docker-compose.yml.",
        "- One Celery worker (`celery -A payments_project worker --concurrency 4`, prefork, "
        "as docker-compose.yml), Redis db 12 as cache and broker. No beat (its sweeps "
        "would run during the measurements).",
        "- Load: wrk (2 threads) on loopback, a separate process; `bench/wrk/bench.lua` gives "
        "every create request its own `Idempotency-Key`.",
        f"- Load average before/after: {results.get('load_before')} / "
        f"{results.get('load_after')}. 'machine busy' in the tables is the whole machine's "
        "CPU use during the run (everything: the set, wrk, and whatever else runs here).",
    ]
    cal = results.get("calibration", {})
    if cal.get("trials"):
        out += [
            "",
            "Calibration (create payment, 16 connections, "
            f"{plan['calibrate_seconds']} s each; within 5 % of the best rate the lower p99 "
            "wins):",
            "",
            "| workers × threads | req/s | p50 ms | p99 ms |",
            "| --- | ---: | ---: | ---: |",
        ]
        out += [
            f"| {t['workers']} × {t['threads']} | {_f(t['rps'])} | {_f(t['p50_ms'])} | "
            f"{_f(t['p99_ms'])} |"
            for t in cal["trials"]
        ]
    elif cal.get("given"):
        out += ["", "Workers and threads were given on the command line (no calibration)."]

    if "1" in s:
        out += ["", "## 1. Create payment (secret key, Idempotency-Key, sandbox)", ""]
        out += [
            "The reference (`/bench/ref/payments/<merchant>`, `bench/reference.py`) writes the "
            "same rows in raw SQL in one transaction (payment, its first timeline event, the "
            "idempotency key with the rendered response) and pushes one message to Redis, "
            "with no middleware, no auth, no DRF. After each stack run the worker is given "
            f"up to {plan['drain_cap']:.0f} s to empty the queue of checkout tasks.",
        ]
        for conns, data in s["1"].items():
            out += ["", f"**{conns} connections** — median {_f(data['median']['rps'])} req/s "
                    f"(p50 {_f(data['median']['p50_ms'])} ms, p99 {_f(data['median']['p99_ms'])}"
                    f" ms) against {_f(data['ref_median']['rps'])} req/s: ratio "
                    f"{_f(data['ratio'], 2)}", ""]  # fmt: skip
            out += _runs_table(data["runs"], data["ref_runs"])
    if "2" in s:
        out += ["", "## 2. Create payment with a provider answering in 300 ms", ""]
        out += [
            "Stripe through the real SDK against the fake Stripe server of the tests "
            "(`payments/tests/fakes/stripe_server.py`, `delay(0.3)`), in its own process. "
            "The checkout calls run in the worker: it makes about 13 a second (4 processes × "
            "300 ms), so what it has not reached by the end of a run is dropped. Provider "
            f"checkouts made during the scenario: {s['2'].get('provider_checkouts_made', 0):,}. "
            "The API's rate does not wait for the provider; it can even beat scenario 1's, "
            "because a worker waiting on the provider burns no CPU, where scenario 1's "
            "worker spends its CPU on the sandbox's checkouts (see the CPU table).",
        ]
        for conns in ("16", "64"):
            data = s["2"].get(conns)
            if not data:
                continue
            out += ["", f"**{conns} connections** — median {_f(data['median']['rps'])} req/s, "
                    f"p99 {_f(data['median']['p99_ms'])} ms; {_f(data.get('vs_scenario_1'), 2)}"
                    " of scenario 1", ""]  # fmt: skip
            out += _runs_table(data["runs"])
    if "3" in s:
        data = s["3"]
        out += ["", "## 3. Inbound webhook ingest (verify, store, dedupe, enqueue)", ""]
        out += [
            "Signed sandbox `payment.succeeded` events (Standard Webhooks, signed just before "
            "each run) for pending payments of scenario 1 "
            f"({data.get('payments_referenced', 0):,} of them), each with its own event id; "
            "the worker processes what is stored (the payments succeed). The reference "
            "(`/bench/ref/webhooks/sandbox`) parses the body, inserts the `InboundWebhook` row "
            "with `ON CONFLICT DO NOTHING` and pushes one message; it verifies nothing.",
            "",
            f"Median {_f(data['median']['rps'])} req/s against "
            f"{_f(data['ref_median']['rps'])}: ratio {_f(data['ratio'], 2)}. Requests "
            f"beyond the prepared events (replayed, so duplicates): "
            f"{sum(r.get('wrapped', 0) for r in data['runs']):,}.",
            "",
        ]
        out += _runs_table(data["runs"], data["ref_runs"])
    if "4" in s:
        data = s["4"]
        m = data["median"]
        out += ["", "## 4. List payments: first page and a deep page", ""]
        out += [
            f"{data['rows']:,} payments of one merchant (`manage.py seed_demo --payments`, in "
            f"`{results.get('seed', {}).get('db')}`, seeded once and kept: a comment on the "
            "database marks a finished seed). The deep page starts "
            f"{data['depth']:,} rows down (a cursor at that id). {data['connections']} "
            "connections. The reference runs the same keyset SELECT (every column, "
            "`id < cursor ORDER BY id DESC LIMIT 21`) and encodes the rows as JSON.",
            "",
            "| page | p50 ms | p99 ms | req/s |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name in ("first", "deep", "ref_first", "ref_deep"):
            out.append(
                f"| {name.replace('ref_', 'reference, ')} | {_f(m[name]['p50_ms'], 2)} | "
                f"{_f(m[name]['p99_ms'], 2)} | {_f(m[name]['rps'])} |"
            )
        out += [
            "",
            f"Deep/first p50: {_f(data['deep_vs_first'], 2)} (reference "
            f"{_f(data['ref_deep_vs_first'], 2)}); first page against the reference's rate: "
            f"{_f(data['first_vs_ref'], 2)}.",
        ]
    if "5" in s:
        data = s["5"]
        out += ["", "## 5. Payment success → merchant callback", ""]
        out += [
            "A receiver process (`bench/servers.py receiver`) records each callback's arrival; "
            "an endpoint for `payment.succeeded` is registered through the API. Payments are "
            "driven to success by signed sandbox webhooks (the path a real provider takes), "
            f"{plan['callback_rate']:.0f} a second; latency = arrival − the payment's "
            "`completed_at`. Deliveries/s: `manage.py redeliver --endpoint` queues every "
            "delivery of the endpoint at once and the one worker drains them (first to last "
            "arrival). The reference signs and POSTs the same number of callbacks from 4 "
            "processes with keep-alive sessions (no Celery, no database).",
            "",
            "| run | callbacks | p50 ms | p99 ms | max ms |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        out += [
            f"| latency {i} | {r['count']} | {_f(r['p50_ms'], 0)} | {_f(r['p99_ms'], 0)} | "
            f"{_f(r['max_ms'], 0)} |"
            for i, r in enumerate(data["latency_runs"], 1)
        ]
        out += ["", "| run | deliveries | seconds | deliveries/s |", "| --- | ---: | ---: | ---: |"]
        out += [
            f"| drain {i} | {r['count']:,} | {_f(r['seconds'])} | {_f(r['per_second'])} |"
            for i, r in enumerate(data["drain_runs"], 1)
        ]
        ref = data["ref"]
        out.append(
            f"| reference | {ref['count']:,} | {_f(ref['seconds'])} | {_f(ref['per_second'])} |"
        )
    if "6" in s:
        data = s["6"]
        out += ["", "## 6. Reconciliation", ""]
        out += [
            f"`manage.py reconcile --provider sandbox --since {data['since']} --until "
            f"{data['until']}` over the seeded database ({data['payments_total']:,} payments, "
            f"{data['sandbox_payments']:,} of them through the sandbox: the bench seeds with "
            "`seed_demo --provider sandbox`, since the sandbox is the provider that can be "
            "reconciled offline; a run compares every payment and refund of the range with "
            "the sandbox's books). Peak memory is the process's maximum resident set "
            "(`ru_maxrss`). The reference streams both sides with server-side cursors in raw "
            "SQL, merged by our id, comparing status, amount and currency.",
            "",
            "| run | seconds | peak MB | provider records | ours checked | mismatches |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for i, r in enumerate(data["runs"], 1):
            out.append(
                f"| reconcile {i} | {_f(r['seconds'])} | {_f(r['peak_mb'], 0)} | "
                f"{_f(r.get('provider_records'), 0)} | {_f(r.get('ours'), 0)} | "
                f"{_f(r.get('mismatches'), 0)} |"
            )
        for i, r in enumerate(data["ref_runs"], 1):
            out.append(
                f"| reference {i} | {_f(r['seconds'])} | {_f(r['peak_mb'], 0)} | "
                f"{_f(r.get('rows'), 0)} rows | | {_f(r.get('mismatches'), 0)} |"
            )
    queries = results.get("queries")
    if queries and "error" not in queries:
        out += [
            "",
            "## Queries of one request",
            "",
            "Captured in-process (`bench/capture.py`, Django's test client and "
            "`CaptureQueriesContext`; the second of two requests, so nothing one-time "
            "counts). The reference views were written from these.",
        ]
        for name, q in queries.items():
            out += [
                "",
                f"**{name}** — {q['status']}, {len(q['queries'])} SQL statements, Redis: "
                f"{', '.join(q['redis']) or 'none'}; {q['ms']} ms in-process",
                "",
                "```",
                *[f"{x['ms']:6.2f} ms  {x['sql']}" for x in q["queries"]],
                "```",
            ]
    profiles = results.get("profiles", {})
    if profiles:
        out += [
            "",
            "## Profiles",
            "",
            "py-spy (`record --subprocesses --format raw`, 200 Hz) over every gunicorn worker "
            "under the same load as the scenario at 16 connections. *wall*: every sampled "
            "thread that py-spy does not judge idle, which includes waiting on PostgreSQL and "
            "Redis sockets and waiting for the GIL; *GIL*: only the thread holding the GIL, "
            "i.e. Python burning CPU. Raw stacks: `bench/out/profile-*.txt`.",
        ]
        for key, title in (
            ("create", "Create payment, wall"),
            ("create-gil", "Create payment, GIL (CPU)"),
            ("webhooks", "Webhook ingest, wall"),
            ("webhooks-gil", "Webhook ingest, GIL (CPU)"),
            ("worker-create-gil", "The Celery worker during create payment, GIL (CPU)"),
            ("worker-deliveries-gil", "The Celery worker sending callbacks (scenario 5), GIL"),
        ):
            if key in profiles:
                out += ["", f"### {title}", "", *_profile_section(key, profiles[key])]
    out += ["", "## Missed targets and what limits them", ""]
    if not missed:
        out.append("None of the measured targets was missed." if targets else "Nothing measured.")
    cpu_of = {
        "create": s.get("1", {}).get("16", {}),
        "webhooks": s.get("3", {}),
    }
    for name, measured, ref, r, target, _, prof in missed:
        out += [f"- **{name}**: {measured} (reference {ref}, ratio {r}); target {target}."]
        stack = cpu_of.get(prof or "", {})
        if stack.get("cpu_ms_per_request"):
            out.append(
                f"  CPU per request (web + PostgreSQL + worker): "
                f"{_cpu(stack['cpu_ms_per_request'])} ms against the reference's "
                f"{_cpu(stack.get('ref_cpu_ms_per_request'))} ms."
            )
        p = profiles.get(f"{prof}-gil") or profiles.get(prof or "", {})
        if p.get("buckets"):
            skip = ("the view", "any ", "PaymentListCreateApi", "idempotency wrapper")
            top = [b for b in p["buckets"] if not b[0].startswith(skip) and b[1] >= 1]
            top = sorted(top, key=lambda b: -b[1])[:8]
            out.append(
                "  Where the web process's CPU goes (GIL profile, inclusive): "
                + "; ".join(f"{label} {pct:.0f} %" for label, pct in top)
                + ". See the profiles above."
            )
    path.write_text("\n".join(out) + "\n")
