"""A full disk on the drone (a real tmpfs, filled): `pli edge run` keeps flying and detecting,
high-severity alerts go into the outbox's reserved space, the rest wait in memory, and all of
them are written once space returns; nothing is numbered twice."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from factories import new_alert

from comms.classes import Severity
from comms.outbox import Outbox
from edge.runtime import RunConfig, run_flight


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs of its own (the test runs as root, as CI does), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk; returns the filler (delete it to give the space back)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as fh:
        block = b"\0" * 65536
        while True:
            try:
                fh.write(block)
            except OSError:
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    return filler


def test_the_outbox_keeps_high_severity_in_its_reserve_and_holds_the_rest_until_space_returns(small_disk, caplog):
    box = Outbox(small_disk / "outbox.db", "UAV-07")
    assert box.reserve.stat().st_size == 1 << 20
    filler = fill(small_disk)
    caplog.set_level(logging.WARNING)
    made = []
    for i in range(30):  # numbered and put on a full disk: never an exception
        a = new_alert(box, Severity.HIGH if i % 2 else Severity.MEDIUM, "defect" if i % 2 else "bird_nest")
        made.append(box.put(a, thumb=b"\xff\xd8" + b"t" * 3000))
    assert box.full and not box.reserve.exists()
    stored = {d["id"] for d in box.alerts()}
    assert {a.id for a in made if a.severity == Severity.HIGH} <= stored  # every high one written, in the reserve
    assert box.held == len(made) - len(stored) > 0  # the medium ones wait in memory
    assert box.status()["held_in_memory"] == box.held and not box.status()["safe_to_power_off"]
    assert "disk full while" in caplog.text and "released the 1048576-byte reserve" in caplog.text
    assert len({a.id for a in made}) == len(made)  # numbers never reused, counter or not
    filler.unlink()  # space returns
    assert box.recover(force=True) == len(made) - len(stored)
    assert {d["id"] for d in box.alerts()} == {a.id for a in made} and box.held == 0
    assert not box.full and box.reserve.exists()  # the reserve is made again
    later = new_alert(box)
    assert later.seq == max(a.seq for a in made) + 1  # the counter went past the numbers handed out in memory
    reopened = Outbox(small_disk / "outbox.db", "UAV-07")
    assert len(reopened.alerts()) == len(made)


def test_edge_run_on_a_full_disk_processes_the_whole_flight(exported_fp32, flight, small_disk, caplog):
    box = Outbox(small_disk / "outbox.db", "UAV-07")
    filler = fill(small_disk)
    caplog.set_level(logging.WARNING)
    cfg = RunConfig(drone_id="UAV-07", flight_id="T1", conf=0.05)
    summary = run_flight(flight.out / "images", exported_fp32, box, cfg, progress=False)
    assert summary.frames == flight.frames  # the rest of the flight was processed
    raised = sum(summary.alerts.values())
    assert raised > 0 and len(box.alerts()) + box.held == raised  # none lost
    assert all(d["crop"] is None or Path(d["crop"]).exists() for d in box.alerts())  # no dangling crop paths
    assert "disk full" in caplog.text
    filler.unlink()
    box.recover(force=True)
    assert len(box.alerts()) == raised and box.held == 0
    assert len({d["id"] for d in box.alerts()}) == raised


def test_the_links_keep_sending_and_settling_alerts_on_a_full_disk(broker, small_disk, caplog):
    """`pli link run`'s bookkeeping (sent, acknowledged) on a full disk: kept in memory, so every
    alert still goes home once and is settled, and written when space returns."""
    from factories import fill as put_alerts
    from store import Store
    from waiting import until

    from comms.mqtt_link import MqttConfig, MqttLink

    box = Outbox(small_disk / "outbox.db", "UAV-07")
    ids = put_alerts(box, 30)
    filler = fill(small_disk)
    caplog.set_level(logging.WARNING)
    cloud = Store(broker.port)
    link = MqttLink(box, MqttConfig(port=broker.port), resend_after_s=30)
    link.start()
    try:
        assert until(lambda: box.counts() == {"acked": 30}, 30, link.pump), box.counts()  # settled, in memory
        for _ in range(20):
            link.pump()
        assert set(cloud.stored) == set(ids)
        assert len(cloud.ids) == 30  # each sent once: a send kept in memory waits its resend interval
        assert box.status()["acks_in_memory"] == 30 and box.status()["disk_full"]
        assert "disk full while recording" in caplog.text
        look = Outbox(small_disk / "outbox.db", "UAV-07", new_epoch=False, reserve_bytes=0)
        assert "acked" not in look.counts()  # nothing of it written yet
        filler.unlink()  # space returns
        assert until(lambda: "acked" in look.counts() and look.counts() == {"acked": 30}, 10, link.pump)
        assert box.status()["acks_in_memory"] == 0 and "space returned" in caplog.text
    finally:
        link.stop()
        cloud.stop()
