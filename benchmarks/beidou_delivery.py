"""BeiDou delivery under a service frequency, message loss and a steady alert rate (simulated time).

    .venv/bin/python benchmarks/beidou_delivery.py [--rate 2] [--hours 1] [--freq 60] [--loss 0.1]

A discrete-event simulation with the real parts that decide capacity: alerts are packed by
`comms.alert_pack.pack` into the 77-byte payload of a level-3 card (signed, as on the air), one
message per service interval, most severe first; the satellite loses a message with the given
probability (seeded). Compared: one alert per message against packed batches. Alerts a lost
message carried stay "sent, unconfirmed" in the outbox and reach the cloud over MQTT when 4G
returns (not counted here: this measures BeiDou alone). Reports alerts delivered per hour, p50/p95
latency from the alert's creation to its arrival at the ground station, and the backlog left.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comms.alert import Alert
from comms.alert_pack import pack, unpack
from comms.classes import Severity

KEY = b"benchmark key, not a secret....."
PAYLOAD = 77  # level-3 card, mixed mode
T0 = datetime(2026, 11, 22, 8, tzinfo=UTC)


def simulate(rate_per_min: float, hours: float, freq_s: float, loss: float, per_message: int | None,
             delay_s: float, seed: int) -> dict:
    rng = random.Random(seed)
    horizon = hours * 3600
    arrivals, t, seq = [], 0.0, 0
    while True:
        t += rng.expovariate(rate_per_min / 60)
        if t >= horizon:
            break
        seq += 1
        sev = Severity.HIGH if rng.random() < 0.6 else Severity.MEDIUM
        arrivals.append(Alert("UAV-07", seq, "F1", T0 + timedelta(seconds=t), 25.2 + rng.random() / 100,
                              102.5 + rng.random() / 100, 1650.0, "defect" if sev == Severity.HIGH else "bird_nest",
                              0.9, sev, tower_id=f"T{rng.randrange(100):02d}"))
    queue: list[tuple[int, int, Alert]] = []  # outbox order: severity desc, then oldest
    created = {a.seq: (a.time - T0).total_seconds() for a in arrivals}
    latencies, messages, lost = [], 0, 0
    i, now = 0, 0.0
    while now < horizon:
        while i < len(arrivals) and created[arrivals[i].seq] <= now:
            heapq.heappush(queue, (-int(arrivals[i].severity), arrivals[i].seq, arrivals[i]))
            i += 1
        if queue:
            ordered = [heapq.heappop(queue) for _ in range(len(queue))]
            batch = [a for _, _, a in ordered][: per_message or len(ordered)]
            packed = pack(batch, 7, KEY, PAYLOAD)
            for item in ordered[len(packed.alerts):]:
                heapq.heappush(queue, item)
            messages += 1
            if rng.random() < loss:
                lost += 1
            else:
                for a in unpack(packed.payload, lambda k: ("UAV-07", KEY)):  # what the ground station decodes
                    latencies.append(now + delay_s - created[a.seq])
        now += freq_s
    delivered = len(latencies)
    return {
        "alerts": len(arrivals), "messages": messages, "lost_messages": lost, "delivered": delivered,
        "delivered_per_hour": round(delivered / hours, 1), "backlog": len(queue),
        "p50_latency_s": round(statistics.median(latencies), 1) if latencies else None,
        "p95_latency_s": round(statistics.quantiles(latencies, n=20)[-1], 1) if len(latencies) > 1 else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=2.0, help="alerts per minute (default 2)")
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--freq", type=float, default=60.0, help="service frequency in seconds (default 60)")
    ap.add_argument("--loss", type=float, default=0.1)
    ap.add_argument("--delay", type=float, default=2.0, help="satellite delivery delay in seconds")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    runs = {name: simulate(args.rate, args.hours, args.freq, args.loss, k, args.delay, args.seed)
            for name, k in (("one_per_message", 1), ("packed", None))}
    print(f"{args.rate:g} alerts/min for {args.hours:g} h, one message per {args.freq:g} s, {args.loss:.0%} loss")
    print(f"{'':<18}{'alerts':>8}{'messages':>10}{'lost':>6}{'delivered/h':>13}{'p50 s':>8}{'p95 s':>8}{'backlog':>9}")
    for name, r in runs.items():
        print(f"{name:<18}{r['alerts']:>8}{r['messages']:>10}{r['lost_messages']:>6}{r['delivered_per_hour']:>13}"
              f"{r['p50_latency_s']!s:>8}{r['p95_latency_s']!s:>8}{r['backlog']:>9}")
    print(json.dumps({"benchmark": "beidou_delivery", **vars(args), **runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
