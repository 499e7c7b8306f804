"""API latency: alert queries (bounding box + time window, 100 rows a page) over a million alerts
on PostgreSQL, from 8 concurrent clients, through the real server (`pli cloud serve`, uvicorn).

    .venv/bin/python benchmarks/api_query.py [--rows 1000000] [--clients 8] [--queries 50]

The alerts are spread over a 1 x 1 degree area and one year (loaded with COPY); each query asks
for a random 0.02 x 0.02 degree box and a random 30-day window. Prints p50/p95/max, the query
plan of one such query (the index it uses), and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from cloud.db import session_scope, upgrade
from cloud.local_postgres import LocalPostgres
from cloud.tokens import create_token
from comms.local_broker import free_port

T0 = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_S = 365 * 86400


def cpu_flags() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0]
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni") if f" {f}" in flags)


def load(pg: LocalPostgres, rows: int, seed: int = 0) -> float:
    import psycopg

    rng = random.Random(seed)
    t0 = time.perf_counter()
    with psycopg.connect(f"host=127.0.0.1 port={pg.port} user={pg.user} dbname={pg.database}") as con:
        con.execute("INSERT INTO drones (id, fleet, highest_epoch) SELECT 'UAV-' || lpad(g::text, 2, '0'), 'fleet1', 1 "
                    "FROM generate_series(0, 49) g")
        cols = ("id, drone_id, epoch, seq, flight_id, time, lat, lon, alt, fault_class, confidence, severity, "
                "position_source, flags, via, precise, status, conflict, received_at")
        with con.cursor().copy(f"COPY alerts ({cols}) FROM STDIN") as copy:
            buf = io.StringIO()
            for i in range(rows):
                d = i % 50
                t = T0 + timedelta(seconds=rng.uniform(0, YEAR_S))
                sev = rng.choice(("high", "medium"))
                buf.write(f"UAV-{d:02d}-00001-{i:010d}\tUAV-{d:02d}\t1\t{i}\tF{i // 500}\t{t.isoformat()}\t"
                          f"{25 + rng.random():.7f}\t{103 + rng.random():.7f}\t1600\t"
                          f"{'defect' if sev == 'high' else 'bird_nest'}\t0.9\t{sev}\tlaser\t[]\tmqtt\tt\tnew\tf\t"
                          f"{t.isoformat()}\n")
                if i % 50_000 == 49_999:
                    copy.write(buf.getvalue())
                    buf = io.StringIO()
            copy.write(buf.getvalue())
        con.execute("ANALYZE alerts")
    return time.perf_counter() - t0


def query_params(rng: random.Random) -> dict:
    lon, lat = 103 + rng.uniform(0, 0.98), 25 + rng.uniform(0, 0.98)
    since = T0 + timedelta(seconds=rng.uniform(0, YEAR_S - 30 * 86400))
    return {"bbox": f"{lon:.5f},{lat:.5f},{lon + 0.02:.5f},{lat + 0.02:.5f}", "since": since.isoformat(),
            "until": (since + timedelta(days=30)).isoformat(), "limit": 100}


def cpu_seconds(match) -> float:
    """CPU time (user + system) of the processes whose (pid, parent pid, name) `match` accepts, from /proc."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if match(int(pid), int(fields[1]), name):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def client(k: int, base: str, headers: dict, queries: int, start, results) -> None:
    rng = random.Random(k)
    lat, seen = [], []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
        start.wait()
        for _ in range(queries):
            t0 = time.perf_counter()
            r = c.get("/alerts", params=query_params(rng))
            lat.append(time.perf_counter() - t0)
            r.raise_for_status()
            seen.append(len(r.json()["items"]))
    results.put((lat, seen, time.process_time()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--queries", type=int, default=50, help="queries per client")
    ap.add_argument("--server-workers", type=int, default=1, help="pli cloud serve --workers")
    args = ap.parse_args()
    pg = LocalPostgres(Path(tempfile.mkdtemp(prefix="pli-bench-api-"))).start()
    server = None
    try:
        upgrade(pg.url)
        load_s = load(pg, args.rows)
        with session_scope(pg.url) as s:
            token = create_token(s, "bench", "operator")
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "pli", "-q", "cloud", "serve", "--port", str(port),
                                   "--workers", str(args.server_workers)],
                                  env={**os.environ, "PLI_DATABASE_URL": pg.url}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers) as warm:  # warm-up: plans, pools, caches
            for i in range(20):
                warm.get("/alerts", params=query_params(random.Random(1000 + i))).raise_for_status()
        # Each client a process of its own (one thread each): clients as threads of one process
        # would wait on each other's interpreter lock and time that as server latency.
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        start = ctx.Event()
        procs = [ctx.Process(target=client, args=(k, base, headers, args.queries, start, results))
                 for k in range(args.clients)]
        for p_ in procs:
            p_.start()
        def of_server(pid: int, ppid: int, name: str) -> bool:
            return server.pid in (pid, ppid)  # with --workers, uvicorn's processes are its children

        def of_postgres(pid: int, ppid: int, name: str) -> bool:
            return name == "postgres"

        cpu0 = (cpu_seconds(of_server), cpu_seconds(of_postgres), time.perf_counter())
        start.set()
        latencies: list[float] = []
        rows_seen: list[int] = []
        client_cpu = 0.0
        for _ in procs:
            lat, seen, cpu = results.get(timeout=600)
            latencies += lat
            rows_seen += seen
            client_cpu += cpu
        cpu = {"server": cpu_seconds(of_server) - cpu0[0], "postgres": cpu_seconds(of_postgres) - cpu0[1],
               "clients": client_cpu, "wall": time.perf_counter() - cpu0[2]}
        for p_ in procs:
            p_.join()
        p = query_params(random.Random(7))
        w, s_, e, n = (float(v) for v in p["bbox"].split(","))
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={pg.port} user={pg.user} dbname={pg.database}") as con:
            plan = [r[0] for r in con.execute(  # the query list_alerts sends (cloud/api/routes/alerts.py)
                "EXPLAIN (ANALYZE, COSTS OFF) SELECT *, count(*) OVER () FROM alerts WHERE time >= %s AND time < %s "
                "AND lon BETWEEN %s AND %s AND lat BETWEEN %s AND %s AND point(lon, lat) <@ box(point(%s, %s), "
                "point(%s, %s)) ORDER BY time DESC, id LIMIT 100",
                (p["since"], p["until"], w, e, s_, n, w, s_, e, n))]
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        pg.remove()
    lat_ms = sorted(x * 1000 for x in latencies)
    p95 = lat_ms[int(0.95 * (len(lat_ms) - 1))]
    print(f"{args.rows} alerts on PostgreSQL (loaded in {load_s:.0f} s); server workers {args.server_workers}; "
          f"{args.clients} clients x {args.queries} "
          f"queries (box 0.02 deg, 30 days, 100 a page; mean {statistics.mean(rows_seen):.1f} rows returned)")
    print(f"CPU flags: {cpu_flags()}, {os.cpu_count()} cores")
    print(f"latency ms: p50 {statistics.median(lat_ms):.1f}  p95 {p95:.1f}  max {lat_ms[-1]:.1f}")
    n = len(lat_ms)
    print(f"throughput {n / cpu['wall']:.0f} queries/s; CPU per query: server {cpu['server'] / n * 1000:.2f} ms, "
          f"PostgreSQL {cpu['postgres'] / n * 1000:.2f} ms, clients {cpu['clients'] / n * 1000:.2f} ms")
    print("plan:\n  " + "\n  ".join(plan))
    print(json.dumps({"benchmark": "api_query", "rows": args.rows, "server_workers": args.server_workers,
                      "clients": args.clients, "queries": len(lat_ms),
                      "p50_ms": round(statistics.median(lat_ms), 1), "p95_ms": round(p95, 1),
                      "max_ms": round(lat_ms[-1], 1), "qps": round(n / cpu["wall"], 1),
                      "cpu_ms_per_query": {k: round(v / n * 1000, 2) for k, v in cpu.items() if k != "wall"},
                      "index": next((ln for ln in plan if "Index" in ln), None),
                      "cpu_flags": cpu_flags()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
