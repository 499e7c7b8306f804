"""Ingest drain rate: a deep queue of QoS 1 alerts on the broker, drained into the database.

    .venv/bin/python benchmarks/ingest_drain.py [--n 100000] [--backend sqlite|postgresql] [--workers 1] [--kills 0]

Side by side, in one run, against one broker config (Mosquitto with unlimited queues): first
`mosquitto_sub` (the C client, QoS 1, persistent session in a shared-subscription group) drains a
queue of `n` alerts to /dev/null; then `pli cloud ingest` workers (processes, persistent sessions
in their group) drain an identical queue into the database, each alert committed before its
PUBACK. Both queues are built the same way: the subscribers register, go offline, the alerts are
published, the subscribers come back and drain. With `--kills K` one worker is SIGKILLed K times
during the drain and restarted. Checks: every alert stored, none twice (ids compared).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
from sqlalchemy import func, select

from cloud.db import session_scope, upgrade
from cloud.models import Alert
from comms import alert_json
from comms.alert import Alert as Record
from comms.classes import Severity
from comms.local_broker import LocalBroker

GROUP_FILTER = "pli/+/+/alerts"
T0 = datetime(2026, 11, 22, 9, tzinfo=UTC)


def cpu_flags() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0]
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni") if f" {f}" in flags)


SEVERITY = Severity.HIGH  # every alert pages the on-call channel unless --severity says otherwise


def payloads(n: int, drones: int = 20) -> list[tuple[str, bytes, str]]:
    out = []
    for i in range(n):
        d = f"UAV-{i % drones:02d}"
        a = Record(d, i + 1, "F1", T0 + timedelta(seconds=i), 25.0 + (i % 1000) / 1e4, 103.0 + (i // 1000) / 1e4,
                   1600.0, "defect", 0.9, SEVERITY, epoch=1, class_list_version=1, position_source="laser")
        out.append((f"pli/fleet1/{d}/alerts", alert_json.dumps(a), a.id))
    return out


def publish(port: int, msgs: list[tuple[str, bytes, str]]) -> float:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    done = {"n": 0}
    c.on_publish = lambda *a: done.__setitem__("n", done["n"] + 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.perf_counter()
    for k, (topic, payload, _) in enumerate(msgs):
        while k - done["n"] > 20_000:  # packet ids are 16 bits: never more than that outstanding
            time.sleep(0.005)
        c.publish(topic, payload, qos=1)
    while done["n"] < len(msgs):
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()
    return time.perf_counter() - t0


def register(port: int, client_id: str, group: str) -> None:
    """Subscribe with a persistent session, then go offline: the broker queues for it."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    subscribed = {"ok": False}
    c.on_subscribe = lambda *a: subscribed.__setitem__("ok", True)
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    c.loop_start()
    c.subscribe(f"$share/{group}/{GROUP_FILTER}", qos=1)
    while not subscribed["ok"]:
        time.sleep(0.02)
    c.loop_stop()
    c.disconnect()


def drain_mosquitto_sub(port: int, n: int) -> float:
    register(port, "bench-sub", "ref")
    publish(port, payloads(n))
    t0 = time.perf_counter()
    subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-i", "bench-sub", "-c",
                    "-x", "3600", "-q", "1", "-t", f"$share/ref/{GROUP_FILTER}", "-C", str(n)],
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def drain_paho(port: int, n: int) -> float:
    """The Python MQTT client alone (paho, as the ingest uses it: manual PUBACKs, a receiving
    thread), storing nothing: the ceiling of any ingest written on it."""
    from comms.mqtt_link import MqttConfig, connect, make_client

    register(port, "bench-paho", "paho")
    publish(port, payloads(n))
    got = {"n": 0}
    done = threading.Event()
    client = make_client("bench-paho", MqttConfig(port=port), manual_ack=True)

    def on_message(c, u, m) -> None:
        c.ack(m.mid, m.qos)
        got["n"] += 1
        if got["n"] >= n:
            done.set()

    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe(f"$share/paho/{GROUP_FILTER}", qos=1)
    t0 = time.perf_counter()
    connect(client, MqttConfig(port=port))
    done.wait(600)
    seconds = time.perf_counter() - t0
    client.loop_stop()
    client.disconnect()
    return seconds


def count(url: str) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(Alert))


def drain_ingest(port: int, n: int, url: str, workers: int, kills: int, work: Path) -> dict:
    names = [f"bench-ingest-{i}" for i in range(workers)]
    for name in names:
        register(port, name, "ingest")
    msgs = payloads(n)
    publish(port, msgs)
    env = {**os.environ, "PLI_DATABASE_URL": url, "PLI_CLOUD_DIR": str(work / "cloud")}
    cmd = [sys.executable, "-m", "pli", "-q", "cloud", "ingest", "--mqtt-port", str(port), "--batch", "500"]
    procs = {name: subprocess.Popen([*cmd, "--name", name], env=env, stdout=subprocess.DEVNULL) for name in names}
    t0 = time.perf_counter()
    killed = 0
    try:
        while count(url) < n:
            time.sleep(0.2)
            if killed < kills and count(url) > (killed + 1) * n // (kills + 2):
                procs[names[0]].send_signal(signal.SIGKILL)
                procs[names[0]].wait()
                killed += 1
                procs[names[0]] = subprocess.Popen([*cmd, "--name", names[0]], env=env, stdout=subprocess.DEVNULL)
            if time.perf_counter() - t0 > 3600:
                raise TimeoutError(f"only {count(url)} of {n} stored after an hour")
        seconds = time.perf_counter() - t0
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(30)
    with session_scope(url) as s:
        ids = set(s.scalars(select(Alert.id)))
    expected = {m[2] for m in msgs}
    return {"seconds": round(seconds, 2), "rate": round(n / seconds, 1), "lost": len(expected - ids),
            "extra": len(ids - expected), "rows": len(ids), "kills": killed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--kills", type=int, default=0)
    ap.add_argument("--severity", choices=["high", "medium"], default="high",
                    help="high: each alert also goes out on the on-call topic (notify.py); medium: not")
    args = ap.parse_args()
    global SEVERITY
    SEVERITY = Severity.parse(args.severity)
    work = Path(tempfile.mkdtemp(prefix="pli-bench-ingest-"))
    broker = LocalBroker(work / "broker", extra="max_queued_messages 0\nmax_queued_bytes 0\nautosave_interval 0\n"
                         "max_inflight_messages 1000\n").start()
    pg = None
    try:
        if args.backend == "postgresql":
            from cloud.local_postgres import LocalPostgres

            pg = LocalPostgres().start()
            url = pg.url
        else:
            url = f"sqlite:///{work / 'cloud.db'}"
        upgrade(url)
        ref = drain_mosquitto_sub(broker.port, args.n)
        paho = drain_paho(broker.port, args.n)
        got = drain_ingest(broker.port, args.n, url, args.workers, args.kills, work)
    finally:
        broker.stop()
        if pg is not None:
            pg.remove()
    ratio = got["rate"] / (args.n / ref)
    print(f"{args.n} QoS 1 {args.severity}-severity alerts queued, drained ({args.backend}, "
          f"{args.workers} ingest worker(s), "
          f"{got['kills']} SIGKILLs); CPU flags: {cpu_flags()}, {os.cpu_count()} cores")
    print(f"{'mosquitto_sub':<16} {ref:8.2f} s  {args.n / ref:9.0f} msg/s")
    print(f"{'paho alone':<16} {paho:8.2f} s  {args.n / paho:9.0f} msg/s  ({ref / paho:.0%} of mosquitto_sub)")
    print(f"{'pli cloud ingest':<16} {got['seconds']:8.2f} s  {got['rate']:9.0f} msg/s  ({ratio:.0%} of mosquitto_sub)"
          f"  lost {got['lost']}, extra {got['extra']}")
    print(json.dumps({"benchmark": "ingest_drain", "n": args.n, "backend": args.backend, "workers": args.workers,
                      "severity": args.severity,
                      "mosquitto_sub_s": round(ref, 2), "mosquitto_sub_rate": round(args.n / ref, 1),
                      "paho_s": round(paho, 2), "paho_rate": round(args.n / paho, 1), **got,
                      "ratio": round(ratio, 3), "ratio_of_paho": round(got["rate"] / (args.n / paho), 3),
                      "cpu_flags": cpu_flags()}))
    return 0 if got["lost"] == 0 and got["extra"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
