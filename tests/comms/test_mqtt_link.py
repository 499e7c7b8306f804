"""The 4G link against a real Mosquitto broker: delivery, acknowledgements, broker restarts,
and power cuts of the sending process (SIGKILL) mid-send."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime

import pytest
from factories import fill
from store import Store
from waiting import until

from comms.alert import Alert
from comms.classes import Severity
from comms.mqtt_link import MqttConfig, MqttLink
from comms.outbox import Outbox

pytestmark = pytest.mark.slow


Cloud = Store  # the tests' stand-in for the cloud's alert store


KEY = bytes(range(32))


@pytest.fixture
def beidou_home(broker, tmp_path):
    """Factory: simulated drone and ground terminals (service frequency `freq`), their drivers, the
    ground station republishing to the broker, and a Cloud; torn down after the test."""
    from comms.beidou.driver import Driver
    from comms.beidou.sim import Network, SimTerminal, TerminalConfig
    from comms.ground import GroundStation
    from comms.mqtt_link import connect, make_client
    from comms.replay import ReplayGuard

    made = []

    def make(freq: float, drone_driver: bool = True, loss: float = 0.0, acks: bool = False):
        """`drone_driver` False leaves the drone terminal's port to another process: its path is returned.
        `loss`: the satellite loses that share of messages (both ways); `acks`: the station answers by BeiDou."""
        net = Network()
        sims = [SimTerminal(TerminalConfig(address=a, service_frequency_s=freq, delay_s=0.05, bsi_interval_s=0.1,
                                           loss=loss, seed=seed), net).start()
                for a, seed in (("0247718", 3), ("0179773", 4))]
        drone, ground = Driver(sims[0].device) if drone_driver else None, Driver(sims[1].device)
        cloud = Cloud(broker.port)
        client = make_client("ground-test", MqttConfig(port=broker.port))
        connect(client, MqttConfig(port=broker.port))
        station = GroundStation({7: ("UAV-07", KEY)}, ReplayGuard(tmp_path / "replay.db"), client, beidou_acks=acks)
        stop = threading.Event()
        runner = threading.Thread(target=station.run, args=(ground, stop))
        runner.start()
        made.append((sims, drone, ground, client, cloud, stop, runner))
        return drone or sims[0].device, station, cloud

    yield make
    for sims, drone, ground, client, cloud, stop, runner in made:
        stop.set()
        runner.join()
        for d in (drone, ground):
            if d is not None:
                d.close()
        for sim in sims:
            sim.stop()
        client.loop_stop()
        cloud.stop()


_fill = fill


def test_alerts_are_delivered_and_acknowledged_across_a_broker_restart(broker, tmp_path):
    box = Outbox(tmp_path / "o.db", "UAV-01")
    ids = _fill(box, 40)
    cloud = Cloud(broker.port)
    link = MqttLink(box, MqttConfig(port=broker.port), resend_after_s=3)
    link.start()
    try:
        assert until(lambda: box.counts().get("acked", 0) >= 10, 20, link.pump)
        broker.stop()  # mid-flight
        time.sleep(0.5)
        link.pump()  # while the broker is down nothing is lost, nothing is marked done
        broker.start()
        cloud.stop()
        cloud = Cloud(broker.port)
        assert until(lambda: box.counts() == {"acked": 40}, 40, link.pump), box.counts()
    finally:
        link.stop()
        cloud.stop()
    assert set(cloud.ids) <= set(ids)


SENDER = textwrap.dedent("""
    import sys, time
    from comms.mqtt_link import MqttConfig, MqttLink
    from comms.outbox import Outbox
    box = Outbox(sys.argv[1], "UAV-01")
    link = MqttLink(box, MqttConfig(port=int(sys.argv[2])), resend_after_s=2)
    link.start()
    while True:  # paced like a slow uplink, so that kills land while messages are in flight
        link.pump(limit=4)
        time.sleep(0.03)
""")


def _unacked(db) -> int:
    """Alerts not yet acknowledged, read from outside the (possibly killed) sending process."""
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT COUNT(*) FROM alerts WHERE state != 'acked'").fetchone()[0]
    finally:
        con.close()


def _stuck(db) -> list:
    con = sqlite3.connect(db, timeout=30)
    try:
        now = time.time()
        return [(i, st, n, round(now - t, 1) if t else None) for i, st, n, t in con.execute(
            "SELECT id, state, attempts, created FROM alerts WHERE state != 'acked' ORDER BY severity DESC, n "
            "LIMIT 6")]
    finally:
        con.close()


def test_500_alerts_survive_ten_sigkills_of_the_sender(broker, tmp_path):
    db = tmp_path / "o.db"
    box = Outbox(db, "UAV-01")
    ids = _fill(box, 500)
    box.close()
    cloud = Cloud(broker.port)
    rng = random.Random(2026)

    kills = 0
    try:
        while kills < 10 and _unacked(db):
            sender = subprocess.Popen([sys.executable, "-c", SENDER, str(db), str(broker.port)])
            time.sleep(rng.uniform(0.2, 0.7))
            if _unacked(db):  # killed while messages are unacknowledged
                sender.send_signal(signal.SIGKILL)
                kills += 1
            else:
                sender.kill()
            sender.wait()
        sender = subprocess.Popen([sys.executable, "-c", SENDER, str(db), str(broker.port)])
        try:
            assert until(lambda: _unacked(db) == 0, 90), f"{_unacked(db)} alerts never acknowledged: {_stuck(db)}"
        finally:
            sender.kill()
            sender.wait()
    finally:
        cloud.stop()
    assert kills >= 10
    with cloud.lock:
        seen = set(cloud.ids)
    assert seen == set(ids) and len(seen) == 500  # every id at least once, nothing foreign



def test_ground_station_passes_on_verified_alerts_once(beidou_home):
    from datetime import timedelta

    from comms.alert_pack import pack

    drone, station, cloud = beidou_home(freq=0.2)
    t = datetime(2026, 11, 22, 10, tzinfo=UTC)
    alerts = [Alert("UAV-07", i, "F1", t + timedelta(seconds=i), 25.2, 102.5, 1650.0, "defect", 0.9,
                    Severity.HIGH, epoch=1, class_list_version=1) for i in range(1, 4)]
    genuine = pack(alerts, 7, KEY, drone.card.payload_bytes).payload
    forged = pack(alerts, 7, b"not the drone's key", drone.card.payload_bytes).payload
    for payload in (genuine, genuine, forged):
        assert drone.send("0179773", payload).ok
    assert until(lambda: station.stats.messages == 3, 10)
    assert until(lambda: len(cloud.ids) >= 3, 10)
    time.sleep(0.3)
    with cloud.lock:
        assert sorted(cloud.ids) == [a.id for a in alerts]  # once each: the replay was dropped
    assert (station.stats.alerts, station.stats.replays, station.stats.rejected) == (3, 1, 1)


def test_failover_to_beidou_and_back_loses_nothing(broker, beidou_home, tmp_path):
    from comms.forwarder import Forwarder
    from comms.modem import Modem
    from comms.modem_sim import SimModem
    from comms.selector import BEIDOU, MQTT, LinkSelector, SelectorConfig

    freq = 0.5
    drone_bd, station, cloud = beidou_home(freq)
    box = Outbox(tmp_path / "o.db", "UAV-07")
    link = MqttLink(box, MqttConfig(port=broker.port))
    link.start()
    csq = {"now": 22}
    modem_sim = SimModem(lambda t: csq["now"]).start()  # the signal comes over AT+CSQ on a serial port
    modem = Modem(modem_sim.device, timeout_s=0.5)
    fwd = Forwarder(box, link, drone_bd, LinkSelector(SelectorConfig(csq_good=15, csq_bad=9, hold_s=1.0)),
                    modem, 7, KEY, "0179773")
    try:
        assert link.connected.wait(5)
        first = _fill(box, 4)
        assert until(lambda: all(box.state(i) == "acked" for i in first), 10, fwd.tick)
        assert fwd.selector.link == MQTT
        csq["now"] = 3  # over the ridge
        dropped_at = time.monotonic()
        second = _fill(box, 8)
        assert until(lambda: fwd.selector.link == BEIDOU, freq + 1.0, fwd.tick)
        assert time.monotonic() - dropped_at <= freq + 0.5  # one service interval plus one signal sample
        assert until(lambda: fwd.stats.beidou_alerts >= 3, 10, fwd.tick)
        csq["now"] = 25  # back in coverage
        assert until(lambda: fwd.selector.link == MQTT, 5, fwd.tick)
        assert until(lambda: box.counts() == {"acked": 12}, 20, fwd.tick), box.counts()
    finally:
        link.stop()
        modem.close()
        modem_sim.stop()
    reasons = [(s.link, s.reason) for s in fwd.selector.history]
    assert [r[0] for r in reasons][-2:] == [BEIDOU, MQTT] and "CSQ 3" in reasons[-2][1]
    assert set(cloud.ids) == set(first + second)  # every alert arrived, BeiDou ones through the ground station
    assert station.stats.alerts == fwd.stats.beidou_alerts >= 3


def test_pli_link_run_sends_the_outbox_home_over_beidou_when_4g_is_down(broker, beidou_home, tmp_path):
    """The drone's sending loop as a process: device config, outbox, modem and terminal by path.
    The terminal's device appears only after the loop started (late on USB at boot)."""
    from comms.device import DeviceConfig
    from comms.modem_sim import SimModem

    terminal, station, cloud = beidou_home(0.3, drone_driver=False)
    modem = SimModem(lambda t: 2).start()  # over the ridge: no usable 4G
    DeviceConfig("UAV-07", "fleet1", 7, "0179773", "127.0.0.1", broker.port).save(tmp_path / "device.json")
    box = Outbox(tmp_path / "o.db", "UAV-07")
    ids = _fill(box, 5)
    env = {**os.environ, "PLI_DEVICE_KEY": KEY.hex()}
    port = tmp_path / "ttyBD0"  # a udev-style name, not there yet
    try:
        proc = subprocess.Popen([sys.executable, "-m", "pli", "link", "run", "--config",
                                 str(tmp_path / "device.json"), "--outbox", str(tmp_path / "o.db"), "--beidou-port",
                                 str(port), "--beidou-retry-s", "0.5", "--modem-port", modem.device, "--interval",
                                 "0.1", "--until-empty"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        time.sleep(1.5)
        port.symlink_to(terminal)
        out, err = proc.communicate(timeout=60)
    finally:
        modem.stop()
    assert proc.returncode == 0, err[-2000:]
    assert "BeiDou terminal not available" in err
    summary = json.loads(out.splitlines()[-1])
    assert summary["outbox"] == {"acked": 5} and summary["beidou_alerts"] == 5 and summary["mqtt_pubacks"] == 0
    assert [s["link"] for s in summary["switches"]] == ["beidou"] and "CSQ 2" in summary["switches"][0]["reason"]
    assert sorted(set(cloud.ids)) == sorted(ids) and station.stats.alerts == 5


@pytest.mark.parametrize("acks", [True, False])
def test_without_4g_beidou_acknowledgements_recover_lost_messages(broker, beidou_home, tmp_path, acks):
    """No 4G at all (the drone's broker is unreachable), 40 % of messages lost each way: with the
    ground station's BeiDou acknowledgements every alert is confirmed; without, lost ones wait for 4G."""
    from comms.forwarder import Forwarder
    from comms.local_broker import free_port
    from comms.selector import BEIDOU, LinkSelector

    freq = 0.3
    drone_bd, station, cloud = beidou_home(freq, loss=0.4, acks=acks)
    box = Outbox(tmp_path / "o.db", "UAV-07")
    link = MqttLink(box, MqttConfig(port=free_port()))  # nothing listens there: 4G is down
    fwd = Forwarder(box, link, drone_bd, LinkSelector(), lambda: None, 7, KEY, "0179773", beidou_acks=acks,
                    beidou_resend_after_s=4 * freq)
    ids = _fill(box, 12)
    until(lambda: box.counts() == {"acked": 12}, 15 if acks else 3, fwd.tick)
    time.sleep(0.3)
    assert fwd.selector.link == BEIDOU and link.pubacks == 0
    if acks:
        assert box.counts() == {"acked": 12}
        assert set(cloud.ids) == set(ids)  # every alert reached the cloud through the ground station
        assert fwd.stats.beidou_messages > 4  # some went twice: 12 alerts fit in 4 messages
        assert station.stats.ack_messages >= 1 and fwd.stats.beidou_acks >= 12 - box.counts().get("sent_beidou", 0)
    else:
        assert box.counts() == {"sent_beidou": 12} and fwd.stats.beidou_messages == 4  # sent once, never again
        assert 0 < len(set(cloud.ids)) < 12  # what lost messages carried waits for 4G


def _pending(station) -> dict:
    """The station's answers waiting for its terminal: sequence numbers by drone and kind."""
    return {k: {kind: set(seqs) for kind, seqs in v.items()} for k, v in station.to_answer.items()}


def test_the_ground_station_records_and_acknowledges_only_what_the_broker_took(broker, tmp_path):
    """Broker down: the station neither marks the alerts seen nor acknowledges them, so the drone's
    re-send passes later instead of being refused as a replay of alerts that never left."""
    from comms.alert_pack import pack
    from comms.ground import GroundStation
    from comms.mqtt_link import connect, make_client
    from comms.replay import ReplayGuard

    cfg = MqttConfig(port=broker.port)
    client = make_client("ground-confirm", cfg)
    connect(client, cfg)
    guard = ReplayGuard(tmp_path / "replay.db")
    station = GroundStation({7: ("UAV-07", KEY)}, guard, client, beidou_acks=True, publish_timeout_s=0.5)
    t = datetime(2026, 11, 22, 9, tzinfo=UTC)
    alerts = [Alert("UAV-07", i, "F1", t, 25.0, 102.0, 1600.0, "defect", 0.9, Severity.HIGH, epoch=1,
                    class_list_version=1) for i in (1, 2, 3)]
    payload = pack(alerts, 7, KEY, 77).payload
    cloud = None
    try:
        assert until(client.is_connected, 5)
        broker.stop()
        assert until(lambda: not client.is_connected(), 5)
        assert station.handle("0247718", payload) == [] and station.stats.unconfirmed == 1
        assert guard.highest("UAV-07", 1) is None and not station.to_answer
        broker.start()
        cloud = Cloud(broker.port)
        assert until(client.is_connected, 15)
        assert station.handle("0247718", payload) == [a.id for a in alerts]  # the re-send passes
        assert guard.highest("UAV-07", 1) == 3 and _pending(station) == {("0247718", 7): {("ack", 1, 0): {1, 2, 3}}}
        assert station.handle("0247718", payload) == [] and station.stats.replays == 1  # a true replay does not
        assert until(lambda: set(cloud.ids) == {a.id for a in alerts}, 5)
    finally:
        client.loop_stop()
        if cloud is not None:
            cloud.stop()


def test_beidou_alerts_survive_power_cuts_of_drone_and_ground_station(broker, tmp_path):
    """`pli link run` (BeiDou only: no 4G) and `pli ground run` as processes, both killed with
    SIGKILL at seeded moments while alerts are unacknowledged and restarted: every alert reaches
    the cloud, with its one id, and ends acknowledged over BeiDou."""
    from comms.beidou.sim import Network, SimTerminal, TerminalConfig
    from comms.device import DeviceConfig
    from comms.local_broker import free_port
    from comms.modem_sim import SimModem

    net = Network()
    sims = [SimTerminal(TerminalConfig(address=a, service_frequency_s=0.4, delay_s=0.05, bsi_interval_s=0.1), net)
            .start() for a in ("0247718", "0179773")]
    modem = SimModem(lambda t: 2).start()
    DeviceConfig("UAV-07", "fleet1", 7, "0179773", "127.0.0.1", free_port()).save(tmp_path / "device.json")
    (tmp_path / "keys.json").write_text(json.dumps({"7": {"drone_id": "UAV-07", "key_hex": KEY.hex()}}))
    db = tmp_path / "o.db"
    box = Outbox(db, "UAV-07")
    ids = _fill(box, 80)
    box.close()
    env = {**os.environ, "PLI_DEVICE_KEY": KEY.hex()}
    drone_cmd = [sys.executable, "-m", "pli", "link", "run", "--config", str(tmp_path / "device.json"), "--outbox",
                 str(db), "--beidou-port", sims[0].device, "--modem-port", modem.device, "--beidou-acks",
                 "--interval", "0.05"]
    ground_cmd = [sys.executable, "-m", "pli", "ground", "run", "--port", sims[1].device, "--keys",
                  str(tmp_path / "keys.json"), "--replay-db", str(tmp_path / "replay.db"), "--mqtt-port",
                  str(broker.port), "--beidou-acks"]
    cloud = Cloud(broker.port)
    rng = random.Random(5)

    procs = {"drone": subprocess.Popen(drone_cmd, env=env, stderr=subprocess.DEVNULL),
             "ground": subprocess.Popen(ground_cmd, stderr=subprocess.DEVNULL)}
    kills = {"drone": 0, "ground": 0}
    try:
        while sum(kills.values()) < 10 and _unacked(db):
            time.sleep(rng.uniform(0.8, 2.0))
            who = "ground" if rng.random() < 0.3 else "drone"
            if _unacked(db):
                procs[who].send_signal(signal.SIGKILL)
                procs[who].wait()
                kills[who] += 1
                procs[who] = subprocess.Popen(drone_cmd if who == "drone" else ground_cmd, env=env,
                                              stderr=subprocess.DEVNULL)
        assert until(lambda: _unacked(db) == 0, 60), f"{_unacked(db)} alerts never acknowledged: {_stuck(db)}"
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
        cloud.stop()
        modem.stop()
        for sim in sims:
            sim.stop()
    assert sum(kills.values()) == 10 and kills["drone"] >= 5 and kills["ground"] >= 1, kills
    with cloud.lock:
        seen = list(cloud.ids)
    assert set(seen) == set(ids)  # every alert at least once, each under its one id, nothing foreign


def test_the_ground_station_refuses_alerts_too_old_for_its_window_with_a_signed_answer(broker, tmp_path):
    from comms.alert_pack import TOO_OLD, Refusal, pack, unpack_answer
    from comms.ground import GroundStation
    from comms.mqtt_link import connect, make_client
    from comms.replay import WINDOW, ReplayGuard

    cfg = MqttConfig(port=broker.port)
    client = make_client("ground-window", cfg)
    connect(client, cfg)
    station = GroundStation({7: ("UAV-07", KEY)}, ReplayGuard(tmp_path / "replay.db"), client, beidou_acks=True)
    t = datetime(2026, 11, 22, 9, tzinfo=UTC)

    def message(*seqs: int) -> bytes:
        return pack([Alert("UAV-07", s, "F1", t, 25.0, 102.0, 1600.0, "defect", 0.9, Severity.HIGH, epoch=1,
                           class_list_version=1) for s in seqs], 7, KEY, 77).payload

    class Terminal:  # what the station's answers would go out through
        card = type("Card", (), {"payload_bytes": 77})()

        def __init__(self):
            self.sent: list[bytes] = []

        def send(self, to, payload, retries=0):
            self.sent.append(payload)
            return type("R", (), {"ok": True})()

    try:
        assert until(client.is_connected, 5)
        assert len(station.handle("0247718", message(WINDOW + 10))) == 1
        station.to_answer.clear()
        # seq 5 is too old for the window: refused unseen, so it must stay due for MQTT on the drone
        assert len(station.handle("0247718", message(5, WINDOW + 10, WINDOW + 11))) == 1
        assert _pending(station) == {("0247718", 7): {("ack", 1, 0): {WINDOW + 10, WINDOW + 11},
                                                      (TOO_OLD, 1, 0): {5}}}
        terminal = Terminal()
        station._send_answer(terminal)  # refusals go first: they stop wasted sends
        station._send_answer(terminal)
        assert unpack_answer(terminal.sent[0], 7, KEY) == Refusal(TOO_OLD, 1, [5], 0)
        assert not station.to_answer and station.stats.refusal_messages == 1 and station.stats.ack_messages == 1
    finally:
        client.loop_stop()
