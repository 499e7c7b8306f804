"""The SQLite store-and-forward outbox: priorities, link states, bounds, power cuts."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

from comms.alert import Alert
from comms.classes import Severity
from comms.outbox import ACKED, PENDING, SENT_BEIDOU, Outbox


def _alert(box: Outbox, severity: Severity = Severity.HIGH, cls: str = "defect") -> Alert:
    return Alert(box.drone_id, box.next_seq(), "F1", datetime(2026, 11, 22, 9, tzinfo=UTC), 25.0, 102.0, 1600.0,
                 cls, 0.9, severity)


def test_sequence_numbers_survive_a_restart(tmp_path):
    box = Outbox(tmp_path / "o.db", "UAV-01")
    assert [box.next_seq() for _ in range(3)] == [1, 2, 3]
    box.close()
    again = Outbox(tmp_path / "o.db", "UAV-01")
    assert again.next_seq() == 4 and again.next_message() == 1 and again.next_message() == 2


def test_priority_link_states_and_acknowledgement(tmp_path):
    box = Outbox(tmp_path / "o.db", "UAV-01")
    low = _alert(box, Severity.MEDIUM, "bird_nest")
    high = _alert(box, Severity.HIGH)
    for a in (low, high, high):  # the same id twice is stored once
        box.put(a)
    assert [q.alert.id for q in box.due("beidou")] == [high.id, low.id]
    box.mark_sent([high.id], "beidou")
    assert box.state(high.id) == SENT_BEIDOU
    assert [q.alert.id for q in box.due("beidou")] == [low.id]  # not twice by short message
    assert [q.alert.id for q in box.due("mqtt")] == [high.id, low.id]  # but confirmed through 4G
    assert box.ack([high.id, high.id]) == 1
    assert box.state(high.id) == ACKED and [q.alert.id for q in box.due("mqtt")] == [low.id]
    box.mark_sent([high.id], "mqtt")  # a late re-send does not undo the acknowledgement
    assert box.state(high.id) == ACKED and box.state(low.id) == PENDING
    box.mark_sent([low.id], "mqtt")  # published, no acknowledgement yet: not again at once ...
    assert box.due("mqtt") == [] and [q.alert.id for q in box.due("mqtt", resend_after_s=0)] == [low.id]


def test_beidou_takes_alerts_stuck_on_a_dead_4g_link_and_unanswered_ones_when_acks_come(tmp_path):
    box = Outbox(tmp_path / "o.db", "UAV-01")
    on_4g, by_bd = _alert(box), _alert(box)
    for a in (on_4g, by_bd):
        box.put(a)
    box.mark_sent([on_4g.id], "mqtt")
    box.mark_sent([by_bd.id], "beidou")
    assert box.due("beidou") == []  # the broker may still confirm; the ground may still answer
    assert [q.alert.id for q in box.due("beidou", resend_after_s=0)] == [on_4g.id]  # 4G died under it
    assert [q.alert.id for q in box.due("beidou", beidou_resend_after_s=0)] == [by_bd.id]  # no BeiDou answer
    assert [q.alert.id for q in box.due("beidou", resend_after_s=0, beidou_resend_after_s=0)] == [on_4g.id, by_bd.id]
    box.ack([on_4g.id, by_bd.id])
    assert box.due("beidou", resend_after_s=0, beidou_resend_after_s=0) == []


def test_bounds_drop_thumbnails_then_acked_then_low_never_unsent_high(tmp_path):
    box = Outbox(tmp_path / "o.db", "UAV-01", max_alerts=4)
    highs = [_alert(box) for _ in range(3)]
    for a in highs:
        box.put(a, thumb=b"x" * 100)
    nest = _alert(box, Severity.MEDIUM, "bird_nest")
    box.put(nest)
    box.ack([highs[0].id])
    box.put(extra := _alert(box))  # 5 > 4: the acknowledged row goes
    assert box.state(highs[0].id) is None and box.state(nest.id) == PENDING
    box.put(more := _alert(box))  # only unsent alerts left: the medium one goes
    assert box.state(nest.id) is None
    box.put(last := _alert(box))  # only unsent high ones: kept, the store grows
    assert all(box.state(a.id) == PENDING for a in (*highs[1:], extra, more, last))


def test_thumbnails_go_first_when_bytes_run_out(tmp_path):
    box = Outbox(tmp_path / "o.db", "UAV-01", max_bytes=3000)
    alerts = [_alert(box) for _ in range(4)]
    for a in alerts:
        box.put(a, thumb=b"j" * 900)
    queued = {q.alert.id: q.thumb for q in box.due("mqtt")}
    assert set(queued) == {a.id for a in alerts}  # every alert kept
    assert queued[alerts[0].id] is None  # the oldest thumbnail went


CHILD = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime
    from comms.alert import Alert
    from comms.classes import Severity
    from comms.outbox import Outbox
    box = Outbox(sys.argv[1], "UAV-01")
    while True:
        a = Alert("UAV-01", box.next_seq(), "F", datetime(2026, 1, 1, tzinfo=UTC), 1.0, 2.0, 3.0, "defect", 0.5,
                  Severity.HIGH)
        box.put(a)
        print(a.id, flush=True)
""")


def test_power_cut_loses_nothing_that_was_accepted(tmp_path):
    db = tmp_path / "o.db"
    accepted: list[str] = []
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True)
        for _ in range(40):
            accepted.append(child.stdout.readline().strip())
        child.send_signal(signal.SIGKILL)  # mid-write, as a power cut
        child.wait()
    box = Outbox(db, "UAV-01")
    stored = {a["id"] for a in box.alerts()}
    assert set(accepted) <= stored
    seqs = sorted(a["seq"] for a in box.alerts())
    assert len(seqs) == len(set(seqs)) and box.next_seq() > seqs[-1]
