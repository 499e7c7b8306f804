"""BeiDou delivery under a service frequency, message loss and a steady alert rate (simulated time).

    .venv/bin/python benchmarks/beidou_delivery.py [--rate 2] [--hours 1] [--freq 60] [--loss 0.1]

A discrete-event simulation with the real parts that decide capacity: alerts are packed by
`comms.alert_pack.pack` into the 77-byte payload of a level-3 card (signed, as on the air), one
message per service interval, most severe first; the satellite loses a message with the given
probability (seeded). Compared: one alert per message; packed batches (alerts a lost message
carried stay "sent, unconfirmed" until 4G returns, which is not counted: this measures BeiDou
alone); and packed batches with the ground station's BeiDou acknowledgements (`pack_ack`, on the
ground terminal's own interval, lost at the same rate), the drone re-sending what stays
unacknowledged for three intervals. Reports alerts delivered per hour, p50/p95 latency from the
alert's creation to its first arrival at the ground station (over the alerts that arrived), and
how many never arrived within the run.
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
from comms.alert_pack import pack, pack_ack, unpack, unpack_ack
from comms.classes import Severity
from comms.replay import digest

KEY = b"benchmark key, not a secret....."
PAYLOAD = 77  # level-3 card, mixed mode
T0 = datetime(2026, 11, 22, 8, tzinfo=UTC)


def simulate(rate_per_min: float, hours: float, freq_s: float, loss: float, per_message: int | None,
             delay_s: float, seed: int, acks: bool = False) -> dict:
    """Events in simulated time. With `acks`, the ground station answers on its own terminal's
    service interval (half an interval out of phase) with signed acknowledgements, themselves
    lost at the same rate, and the drone re-sends what stays unacknowledged for three intervals."""
    rng = random.Random(seed)
    # Losses drawn from their own streams, so every variant sees the same fate for its n-th message.
    lose_message, lose_ack = random.Random(seed + 1).random, random.Random(seed + 2).random
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
                              0.9, sev, tower_id=f"T{rng.randrange(100):02d}", epoch=1, class_list_version=1))
    created = {a.seq: (a.time - T0).total_seconds() for a in arrivals}
    by_seq = {a.seq: a for a in arrivals}
    resend_after = 3 * freq_s
    events: list[tuple[float, int, str, tuple]] = []  # (time, tie, kind, data)
    tie = 0

    def at(when: float, kind: str, data: tuple = ()) -> None:
        nonlocal tie
        tie += 1
        heapq.heappush(events, (when, tie, kind, data))

    for a in arrivals:
        at(created[a.seq], "alert", (a.seq,))
    for k in range(int(horizon // freq_s) + 1):
        at(k * freq_s, "drone_slot")
        if acks:
            at(k * freq_s + freq_s / 2, "ground_slot")
    pending: set[int] = set()  # never sent
    inflight: dict[int, float] = {}  # sent over BeiDou, unacknowledged: seq -> last sent
    arrived: dict[int, float] = {}  # first arrival at the ground station
    to_ack: set[int] = set()
    messages = lost = ack_messages = 0
    while events:
        now, _, kind, data = heapq.heappop(events)
        if now >= horizon:
            break
        if kind == "alert":
            pending.add(data[0])
        elif kind == "drone_slot":
            due = pending | {s for s, sent in inflight.items() if acks and now - sent >= resend_after}
            if not due:
                continue
            ordered = sorted(due, key=lambda s: (-int(by_seq[s].severity), s))
            packed = pack([by_seq[s] for s in ordered][: per_message or len(ordered)], 7, KEY, PAYLOAD)
            messages += 1
            for a in packed.alerts:
                pending.discard(a.seq)
                inflight[a.seq] = now
            if lose_message() < loss:
                lost += 1
            else:  # what the ground station decodes
                at(now + delay_s, "ground_rx", tuple(unpack(packed.payload, lambda k: ("UAV-07", KEY)).seqs))
        elif kind == "ground_rx":
            for s in data:
                arrived.setdefault(s, now - created[s])
            to_ack.update(data)
        elif kind == "ground_slot" and to_ack:
            payload, done = pack_ack(sorted(to_ack), 7, KEY, 1, PAYLOAD, {s: digest(by_seq[s]) for s in to_ack})
            to_ack.difference_update(done)
            ack_messages += 1
            if lose_ack() >= loss:
                at(now + delay_s, "drone_rx", tuple(unpack_ack(payload, 7, KEY).seqs))
        elif kind == "drone_rx":
            for s in data:
                inflight.pop(s, None)
    latencies = list(arrived.values())
    delivered = len(latencies)
    return {
        "alerts": len(arrivals), "messages": messages, "lost_messages": lost, "ack_messages": ack_messages,
        "delivered": delivered, "delivered_per_hour": round(delivered / hours, 1),
        "backlog": len(arrivals) - delivered,
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
    runs = {name: simulate(args.rate, args.hours, args.freq, args.loss, k, args.delay, args.seed, acks)
            for name, k, acks in (("one_per_message", 1, False), ("packed", None, False),
                                  ("packed_with_acks", None, True))}
    print(f"{args.rate:g} alerts/min for {args.hours:g} h, one message per {args.freq:g} s, {args.loss:.0%} loss")
    print(f"{'':<18}{'alerts':>8}{'messages':>10}{'lost':>6}{'acks':>6}{'delivered/h':>13}{'p50 s':>8}{'p95 s':>8}"
          f"{'not arrived':>13}")
    for name, r in runs.items():
        print(f"{name:<18}{r['alerts']:>8}{r['messages']:>10}{r['lost_messages']:>6}{r['ack_messages']:>6}"
              f"{r['delivered_per_hour']:>13}{r['p50_latency_s']!s:>8}{r['p95_latency_s']!s:>8}{r['backlog']:>13}")
    print(json.dumps({"benchmark": "beidou_delivery", **vars(args), **runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
