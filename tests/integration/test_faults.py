"""Faults injected while alerts flow, with real processes: the broker restarted mid-flight, and
PostgreSQL restarted under the ingest. For each: what was lost (nothing the drone had accepted),
what was stored twice (nothing), how long recovery took, and the ingest's own health check
saying unhealthy while the fault lasts and healthy after. Each measurement is also written to
test-artifacts/faults.jsonl (the figures in docs/benchmarks.md come from a run of these)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from factories import new_alert
from sqlalchemy import func, select
from waiting import until

from cloud.db import session_scope, upgrade
from comms.health import check
from comms.mqtt_link import MqttConfig, MqttLink
from comms.outbox import ACKED, Outbox

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
N = 200


def _ids(url: str) -> list[str]:
    from cloud.models import Alert

    with session_scope(url) as s:
        return list(s.scalars(select(Alert.id)))


def _count(url: str) -> int:
    from cloud.models import Alert

    try:
        with session_scope(url) as s:
            return int(s.scalar(select(func.count()).select_from(Alert)))
    except Exception:  # the database is the thing that is down
        return -1


def _ingest(port: int, url: str, tmp: Path, name: str) -> tuple[subprocess.Popen, Path, Path]:
    env = {**os.environ, "PLI_DATABASE_URL": url, "PLI_CLOUD_DIR": str(tmp / "cloud")}
    log, beat = tmp / f"{name}.log", tmp / f"{name}.health.json"
    proc = subprocess.Popen([sys.executable, "-m", "pli", "cloud", "ingest", "--mqtt-port", str(port), "--name", name,
                             "--health", str(beat), "--batch", "50"], env=env, stderr=log.open("w"))
    assert until(lambda: "ingest subscribed" in log.read_text(), 120), log.read_text()[-1500:]
    assert until(lambda: check(beat) is None, 30), check(beat)  # healthy before any fault
    return proc, log, beat


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


class Flight:
    """A drone putting an alert into its outbox every `every_s` while its link sends them: `step`
    (the drone's loop, one thread, as on the drone) puts what is due and pumps the link."""

    def __init__(self, box: Outbox, link: MqttLink, n: int = N, every_s: float = 0.02):
        self.box, self.link, self.n, self.every_s = box, link, n, every_s
        self.ids: list[str] = []
        self.t0 = time.monotonic()

    @classmethod
    def over_mqtt(cls, outbox: Path, port: int) -> Flight:
        """UAV-07's outbox and its MQTT link to the broker on `port`, started."""
        box = Outbox(outbox, "UAV-07")
        link = MqttLink(box, MqttConfig(port=port), resend_after_s=1)
        link.start()
        return cls(box, link)

    def step(self) -> None:
        due = min(self.n, int((time.monotonic() - self.t0) / self.every_s) + 1)
        while len(self.ids) < due:
            a = new_alert(self.box)
            self.box.put(a)
            self.ids.append(a.id)
        self.link.pump()

    def acked(self, ids: list[str]) -> bool:
        return all(self.box.state(i) == ACKED for i in ids)


def _record(row: dict) -> None:
    out = REPO / "test-artifacts" / "faults.jsonl"
    out.parent.mkdir(exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(row)


def test_the_broker_restarted_mid_flight_loses_and_doubles_nothing(broker, db_url, tmp_path):
    proc, _log, beat = _ingest(broker.port, db_url, tmp_path, "ingest-broker")
    flight = Flight.over_mqtt(tmp_path / "outbox.db", broker.port)
    box, link = flight.box, flight.link
    try:
        assert until(lambda: len(flight.ids) >= N // 2, 60, flight.step)
        broker.stop()  # SIGTERM: mosquitto saves its persistence file, sessions and queued messages
        down = time.monotonic()
        assert until(lambda: check(beat) is not None, 20, flight.step), "ingest still healthy without its broker"
        said = check(beat)
        until(lambda: False, 2.0, flight.step)  # two seconds more of flight without a broker
        broker.start()
        up = time.monotonic()
        before = list(flight.ids)  # everything the drone had accepted by the time the broker came back
        assert until(lambda: flight.acked(before), 90, flight.step)
        recovery = time.monotonic() - up
        assert until(lambda: box.counts() == {ACKED: N}, 90, flight.step), box.counts()
        assert until(lambda: _count(db_url) == N, 60), _count(db_url)
        assert until(lambda: check(beat) is None, 30), check(beat)
    finally:
        link.stop()
        _stop(proc)
    ids = _ids(db_url)
    lost, twice = len(set(flight.ids) - set(ids)), len(ids) - len(set(ids))
    assert lost == 0 and twice == 0 and len(ids) == N
    assert "not connected to the broker" in said
    _record({"fault": "broker restarted mid-flight", "backend": db_url.split(":")[0], "alerts": N, "lost": lost,
             "stored_twice": twice, "outage_s": round(up - down, 1), "recovery_s": round(recovery, 1)})


def test_postgresql_restarted_during_ingest_loses_and_doubles_nothing(broker, tmp_path):
    from cloud.local_postgres import LocalPostgres

    pg = LocalPostgres().start()  # its own server: the session's is shared by other tests
    try:
        upgrade(pg.url)
        proc, _log, beat = _ingest(broker.port, pg.url, tmp_path, "ingest-pg")
        flight = Flight.over_mqtt(tmp_path / "outbox.db", broker.port)
        box, link = flight.box, flight.link
        try:
            assert until(lambda: len(flight.ids) >= N // 3, 60, flight.step)
            pg.stop("fast")
            down = time.monotonic()
            assert until(lambda: check(beat) is not None, 20, flight.step), "ingest still healthy without its database"
            said = check(beat)
            acked_down = box.counts().get(ACKED, 0)
            until(lambda: False, 3.0, flight.step)  # three seconds more of flight without a database
            acked_while_down = box.counts().get(ACKED, 0) - acked_down
            pg.start()
            up = time.monotonic()
            before = list(flight.ids)
            assert until(lambda: flight.acked(before), 120, flight.step)
            recovery = time.monotonic() - up
            assert until(lambda: box.counts() == {ACKED: N}, 120, flight.step), box.counts()
            assert until(lambda: check(beat) is None, 30), check(beat)
        finally:
            link.stop()
            _stop(proc)
        ids = _ids(pg.url)
        lost, twice = len(set(flight.ids) - set(ids)), len(ids) - len(set(ids))
        assert lost == 0 and twice == 0 and len(ids) == N
        assert acked_while_down == 0  # no acknowledgement while the database could not commit
        assert "database: OperationalError" in said, said
        _record({"fault": "PostgreSQL restarted during ingest", "backend": "postgresql", "alerts": N, "lost": lost,
                 "stored_twice": twice, "outage_s": round(up - down, 1), "recovery_s": round(recovery, 1)})
    finally:
        pg.remove()


def test_the_ground_station_killed_with_beidou_messages_in_flight_loses_and_doubles_nothing(ingest, broker,
                                                                                              tmp_path):
    """No 4G: every alert goes by BeiDou (simulated terminals, one message a second) to `pli ground
    run`, which is SIGKILLed while messages are on their way and started again: what reached the
    dead station is sent again by the drone (no acknowledgement came back by BeiDou), and the
    replay window keeps a message heard twice from being stored twice."""
    from comms.beidou.driver import Driver
    from comms.beidou.sim import Network, SimTerminal, TerminalConfig
    from comms.forwarder import Forwarder
    from comms.selector import LinkSelector, SelectorConfig

    _, url = ingest
    key = os.urandom(32)
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"1": {"drone_id": "UAV-07", "key_hex": key.hex()}}))
    net = Network()
    sims = [SimTerminal(TerminalConfig(address=a, service_frequency_s=1.0, delay_s=0.3, bsi_interval_s=0.2), net)
            .start() for a in ("0247718", "0179773")]
    beat, log = tmp_path / "ground.health.json", tmp_path / "ground.log"
    cmd = [sys.executable, "-m", "pli", "ground", "run", "--port", sims[1].device, "--mqtt-port", str(broker.port),
           "--keys", str(keys), "--replay-db", str(tmp_path / "replay.db"), "--beidou-acks", "--health", str(beat)]

    def start_ground() -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stderr=log.open("a"))

        def up() -> bool:  # this process's own beat (a killed one's last beat stays on disk a while)
            try:
                return json.loads(beat.read_text())["pid"] == proc.pid and check(beat) is None
            except (OSError, ValueError, KeyError):
                return False

        assert until(up, 60), log.read_text()[-1500:]
        return proc

    ground = start_ground()
    drone_bd = Driver(sims[0].device)
    box = Outbox(tmp_path / "outbox.db", "UAV-07")
    link = MqttLink(box, MqttConfig(port=broker.port))
    fwd = Forwarder(box, link, drone_bd, LinkSelector(SelectorConfig(hold_s=1.0)), lambda: 0, 1, key, "0179773",
                    beidou_acks=True)
    n, ids = 12, []

    def step() -> None:
        if len(ids) < n:
            a = new_alert(box)
            box.put(a)
            ids.append(a.id)
        fwd.tick()

    try:
        assert until(lambda: box.counts().get(ACKED, 0) >= 3, 90, step), box.counts()
        ground.send_signal(signal.SIGKILL)  # the station's power cut, BeiDou messages on their way
        ground.wait()
        down = time.monotonic()
        until(lambda: False, 3.0, step)
        ground = start_ground()
        up = time.monotonic()
        assert until(lambda: len(ids) == n and box.counts() == {ACKED: n}, 180, step), box.counts()
        recovery = time.monotonic() - up
        assert until(lambda: _count(url) == n, 30), _count(url)
    finally:
        fwd.close()
        drone_bd.close()
        _stop(ground)
        for s in sims:
            s.stop()
    stored = _ids(url)
    lost, twice = len(set(ids) - set(stored)), len(stored) - len(set(stored))
    assert lost == 0 and twice == 0 and len(stored) == n
    _record({"fault": "ground station SIGKILLed, BeiDou messages in flight", "backend": url.split(":")[0],
             "alerts": n, "lost": lost, "stored_twice": twice, "outage_s": round(up - down, 1),
             "recovery_s": round(recovery, 1)})
