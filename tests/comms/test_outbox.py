"""The SQLite store-and-forward outbox: priorities, link states, bounds, power cuts."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import pytest
from factories import new_alert as _alert

from comms.alert import parse_alert_id
from comms.classes import Severity
from comms.outbox import ACKED, PENDING, SENT_BEIDOU, SENT_MQTT, Outbox, OutboxOwnerError


def test_sequence_numbers_survive_a_restart_and_every_open_starts_a_new_epoch(tmp_path):
    box = Outbox(tmp_path / "o.db", "UAV-01")
    assert [box.next_id() for _ in range(3)] == [(1, 1), (1, 2), (1, 3)]
    box.close()
    again = Outbox(tmp_path / "o.db", "UAV-01")
    assert again.next_id() == (2, 4) and again.next_message() == 1 and again.next_message() == 2


def test_another_identity_cannot_open_the_outbox(tmp_path):
    Outbox(tmp_path / "o.db", "UAV-07", "fleet1", 7).close()
    with pytest.raises(OutboxOwnerError, match="belongs to drone UAV-07") as info:
        Outbox(tmp_path / "o.db", "UAV-01")
    assert "\n" not in str(info.value)
    with pytest.raises(OutboxOwnerError, match="fleet fleet1"):
        Outbox(tmp_path / "o.db", "UAV-07", "fleet2")
    assert Outbox(tmp_path / "o.db", "UAV-07", "fleet1", 8).epoch == 2  # a new key id (rotation) is allowed


def test_a_wiped_outbox_and_a_restored_copy_start_new_epochs_above_their_own(tmp_path):
    box = Outbox(tmp_path / "o.db", "UAV-07")
    box.put(first := _alert(box))
    box.close()
    shutil.copy(tmp_path / "o.db", tmp_path / "backup.db")
    for _ in range(3):
        Outbox(tmp_path / "o.db", "UAV-07").close()
    assert Outbox(tmp_path / "o.db", "UAV-07").epoch == 5
    assert Outbox(tmp_path / "wiped.db", "UAV-07").epoch == 1  # knows nothing: a receiver will say "superseded"
    restored = Outbox(tmp_path / "backup.db", "UAV-07")
    assert restored.epoch == 2 and restored.state(first.id) == PENDING  # the old alert keeps its id


def test_superseded_epoch_moves_the_drone_above_it_and_renumbers_what_no_receiver_can_hold(tmp_path):
    box = Outbox(tmp_path / "o.db", "UAV-07")  # epoch 1 (a wiped outbox), the ground knows epoch 6
    by_beidou, on_4g, on_both = _alert(box), _alert(box), _alert(box)
    for a in (by_beidou, on_4g, on_both):
        box.put(a)
    box.mark_sent([by_beidou.id, on_both.id], "beidou")
    box.mark_sent([on_4g.id, on_both.id], "mqtt")
    renamed = box.refuse([by_beidou.id, on_both.id], "superseded_epoch", "beidou", highest_epoch=6)
    assert box.epoch == 7 and list(renamed) == [by_beidou.id]
    assert parse_alert_id(renamed[by_beidou.id])[1] == 7 and box.state(renamed[by_beidou.id]) == PENDING
    assert box.state(by_beidou.id) is None
    # published over MQTT too: the cloud may hold it under its id; it goes by MQTT only, the cloud decides
    assert box.beidou_refused(on_both.id) == "superseded_epoch" and box.state(on_both.id) == SENT_MQTT
    assert on_both.id not in [q.alert.id for q in box.due("beidou", resend_after_s=0, beidou_resend_after_s=0)]
    renamed = box.refuse([on_4g.id], "superseded_epoch", "mqtt", highest_epoch=6)  # the cloud itself refused
    assert parse_alert_id(renamed[on_4g.id])[1] == 7
    new = _alert(box)
    assert new.epoch == 7
    box.close()
    assert Outbox(tmp_path / "o.db", "UAV-07").epoch == 8


def test_refused_for_beidou_goes_by_mqtt_only(tmp_path):
    box = Outbox(tmp_path / "o.db", "UAV-07")
    old, other = _alert(box), _alert(box)
    box.put(old)
    box.put(other)
    box.mark_sent([old.id], "beidou")
    assert box.refuse([old.id], "too_old", "beidou") == {}
    assert [q.alert.id for q in box.due("beidou", beidou_resend_after_s=0)] == [other.id]
    assert [(q.alert.id, q.beidou_refused) for q in box.due("mqtt")] == [(old.id, "too_old"), (other.id, None)]
    assert box.status()["beidou_refused"] == {"too_old": 1}


def test_resend_timers_survive_a_wall_clock_step_and_a_reboot_makes_everything_due(tmp_path, monkeypatch):
    import time

    clock = {"boot": "boot-1", "mono": 1000.0}
    box = Outbox(tmp_path / "o.db", "UAV-07", boot_id=lambda: clock["boot"], monotonic=lambda: clock["mono"])
    a = _alert(box)
    box.put(a)
    box.mark_sent([a.id], "mqtt")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600)  # the wall clock steps back an hour
    assert box.due("mqtt", resend_after_s=30) == []
    clock["mono"] += 31  # 31 s later on the monotonic clock: due, whatever the wall clock says
    assert [q.alert.id for q in box.due("mqtt", resend_after_s=30)] == [a.id]
    box.mark_sent([a.id], "mqtt")
    assert box.due("mqtt", resend_after_s=30) == []
    clock["boot"], clock["mono"] = "boot-2", 5.0  # a reboot: the monotonic clock starts again near 0
    assert [q.alert.id for q in box.due("mqtt", resend_after_s=30)] == [a.id]


def test_a_time_before_2020_is_restamped_and_flagged_never_dropped(tmp_path):
    box = Outbox(tmp_path / "o.db", "UAV-07")
    stored = box.put(_alert(box, time=datetime(2000, 1, 1, tzinfo=UTC)))
    assert stored.time_restamped and stored.time.year >= 2026
    (doc,) = box.alerts()
    assert doc["flags"] == ["time_restamped"] and doc["time"] == stored.time.isoformat().replace("+00:00", "Z")


def test_status_counts_what_is_unsent_by_severity_and_state(tmp_path):
    box = Outbox(tmp_path / "o.db", "UAV-07", "fleet1")
    alerts = [_alert(box, s, c) for s, c in [(Severity.HIGH, "defect")] * 3 + [(Severity.MEDIUM, "bird_nest")] * 2]
    for a in alerts:
        box.put(a)
    box.mark_sent([alerts[0].id], "beidou")
    box.mark_sent([alerts[1].id, alerts[3].id], "mqtt")
    box.ack([alerts[1].id])
    status = box.status()
    assert status["unsent_by_severity"] == {"high": {"pending": 1, "sent_beidou": 1},
                                            "medium": {"pending": 1, "sent_mqtt": 1}}
    assert status["unacknowledged"] == 4 and status["acknowledged"] == 1 and not status["safe_to_power_off"]
    box.ack([a.id for a in alerts])
    assert box.status()["safe_to_power_off"] and box.status()["unsent_by_severity"] == {}


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
    # acknowledged through BeiDou alone: it still goes once by 4G, last, for what BeiDou cannot carry
    assert box.state(high.id) == ACKED and [q.alert.id for q in box.due("mqtt")] == [low.id, high.id]
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
        epoch, seq = box.next_id()
        a = Alert("UAV-01", seq, "F", datetime(2026, 1, 1, tzinfo=UTC), 1.0, 2.0, 3.0, "defect", 0.5,
                  Severity.HIGH, epoch=epoch)
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
    assert len(seqs) == len(set(seqs)) and box.next_id()[1] > seqs[-1]
    assert len({a["epoch"] for a in box.alerts()}) == 3  # one epoch per open
