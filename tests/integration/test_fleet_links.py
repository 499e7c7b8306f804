"""The links hardened for a fleet: epochs that heal wiped and restored outboxes, versioned class
lists (a canary drone on a longer list), signed refusals, a loop that never blocks on the terminal,
alerts that cannot be packed, and `pli link status`. Real broker, simulated terminals on ptys."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from factories import fill, new_alert
from store import Store
from waiting import until

from comms.alert import parse_alert_id
from comms.alert_pack import pack, pack_ack
from comms.beidou.driver import Driver
from comms.beidou.sim import Network, SimTerminal, TerminalConfig
from comms.classes import Severity, known_class_lists
from comms.forwarder import Forwarder
from comms.ground import GroundStation
from comms.mqtt_link import MqttConfig, MqttLink, connect, make_client
from comms.outbox import ACKED, Outbox
from comms.replay import ReplayGuard
from comms.selector import BEIDOU, MQTT, LinkSelector, SelectorConfig

pytestmark = pytest.mark.slow

GROUND = "0179773"
KEYS = {7: ("UAV-07", bytes(range(32))), 8: ("UAV-08", bytes(range(1, 33)))}
ADDRESS = {7: "0247718", 8: "0247719"}
LISTS = known_class_lists()


@dataclass
class Home:
    """Broker, the cloud's store, the ground station (answering by BeiDou) and the terminals."""

    broker: object
    store: Store
    net: Network
    freq: float
    guard: ReplayGuard
    ground_driver: Driver
    client: object
    station: GroundStation | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    runner: threading.Thread | None = None
    sims: list[SimTerminal] = field(default_factory=list)
    drivers: list[Driver] = field(default_factory=list)
    forwarders: list[Forwarder] = field(default_factory=list)

    def run_station(self, class_lists=None) -> GroundStation:
        """(Re)start the ground station, with the class-list versions it knows."""
        if self.runner is not None:
            self.stop.set()
            self.runner.join()
            self.stop = threading.Event()
        self.station = GroundStation(KEYS, self.guard, self.client, beidou_acks=True, class_lists=class_lists)
        self.runner = threading.Thread(target=self.station.run, args=(self.ground_driver, self.stop), daemon=True)
        self.runner.start()
        return self.station

    def terminal(self, key_id: int, **cfg) -> tuple[SimTerminal, Driver]:
        cfg = {"service_frequency_s": self.freq, "delay_s": 0.05, "bsi_interval_s": 0.1} | cfg
        sim = SimTerminal(TerminalConfig(address=ADDRESS[key_id], **cfg), self.net).start()
        self.sims.append(sim)
        drv = Driver(sim.device)
        self.drivers.append(drv)
        return sim, drv

    def drone(self, box: Outbox, key_id: int, csq: dict, driver: Driver | None = None, **kw) -> Forwarder:
        """A drone's sending loop; `csq["now"]` is its modem's signal (None or low: no 4G)."""
        link = MqttLink(box, MqttConfig(port=self.broker.port), resend_after_s=kw.pop("resend_after_s", 30.0))
        link.start()
        assert link.connected.wait(5)
        if driver is None:
            _, driver = self.terminal(key_id)
        fwd = Forwarder(box, link, driver, LinkSelector(SelectorConfig(hold_s=0.0)), lambda: csq["now"], key_id,
                        KEYS[key_id][1], GROUND, beidou_acks=True, beidou_resend_after_s=4 * self.freq, **kw)
        self.forwarders.append(fwd)
        return fwd


@pytest.fixture
def home(broker, tmp_path):
    net = Network()
    freq = 0.25
    ground_sim = SimTerminal(TerminalConfig(address=GROUND, service_frequency_s=freq / 2, delay_s=0.05,
                                            bsi_interval_s=0.1), net).start()
    ground_driver = Driver(ground_sim.device)
    client = make_client("ground-fleet", MqttConfig(port=broker.port))
    connect(client, MqttConfig(port=broker.port))
    h = Home(broker, Store(broker.port), net, freq, ReplayGuard(tmp_path / "replay.db"), ground_driver, client)
    h.sims.append(ground_sim)
    h.run_station()
    yield h
    h.stop.set()
    if h.runner is not None:
        h.runner.join()
    for fwd in h.forwarders:
        fwd.close()
        fwd.mqtt.stop()
    for d in (*h.drivers, ground_driver):
        d.close()
    for sim in h.sims:
        sim.stop()
    client.loop_stop()
    h.store.stop()


def _deliver(fwd: Forwarder, timeout: float = 20) -> None:
    assert until(lambda: set(fwd.outbox.counts()) <= {ACKED}, timeout, fwd.tick), fwd.outbox.counts()


def test_wiped_and_restored_outboxes_heal_through_superseded_epochs(home, tmp_path):
    no_4g = {"now": None}
    _, terminal = home.terminal(7)
    db = tmp_path / "o.db"
    box = Outbox(db, "UAV-07")  # epoch 1
    first = fill(box, 3)
    box.close()
    shutil.copy(db, tmp_path / "backup.db")  # a copy of the outbox as it was after the first flight
    box = Outbox(db, "UAV-07")  # the next boot: epoch 2
    second = fill(box, 2)
    _deliver(home.drone(box, 7, no_4g, terminal))
    assert set(home.store.stored) == set(first + second) and home.guard.highest_epoch("UAV-07") == 2
    old_message = pack([box_alert(box, i) for i in first], 7, KEYS[7][1], 77).payload
    _retire(home.forwarders.pop())

    # A replayed old message creates no second alert: acknowledged again, passed on never.
    assert home.station.handle(ADDRESS[7], old_message) == []
    assert home.station.stats.replays >= 1 and len(home.store.stored) == 5

    # A wiped outbox (a reflashed drone) starts at epoch 1 again: its numbers collide with ids the
    # ground station and the store already hold; they answer "superseded", the drone moves above.
    wiped = Outbox(tmp_path / "wiped.db", "UAV-07")
    assert wiped.epoch == 1
    third = fill(wiped, 2)
    assert set(third) <= set(first)  # the same ids as alerts already delivered, for other faults
    _deliver(home.drone(wiped, 7, no_4g, terminal))
    renumbered = [a["id"] for a in wiped.alerts()]
    assert all(parse_alert_id(i)[1] == 3 for i in renumbered) and wiped.epoch == 3, (renumbered, wiped.epoch)
    assert set(renumbered) <= set(home.store.stored) and len(home.store.stored) == 7
    _retire(home.forwarders.pop())

    # The restored older copy: its three alerts of epoch 1 were delivered (acknowledged again as
    # replays, stored once); its new alerts collide with epoch 2's numbers: superseded, renumbered.
    restored = Outbox(tmp_path / "backup.db", "UAV-07")
    assert restored.epoch == 2
    fourth = fill(restored, 2)
    fwd = home.drone(restored, 7, no_4g, terminal)
    _deliver(fwd)
    assert all(restored.state(i) == ACKED for i in first)
    ids = [a["id"] for a in restored.alerts()]
    assert not set(fourth) & set(ids) and all(parse_alert_id(i)[1] == 4 for i in ids if i not in first)
    assert len(home.store.stored) == 9 and not set(home.store.stored) - set(first + second + renumbered + ids)

    # An old-epoch acknowledgement never settles a new-epoch alert of the same number.
    late = new_alert(restored)
    restored.put(late)
    stale, _ = pack_ack([late.seq], 7, KEYS[7][1], epoch=1)
    for payload in (stale, pack_ack([late.seq], 7, KEYS[7][1], epoch=late.epoch)[0]):
        home.ground_driver.send(ADDRESS[7], payload, retries=3)
        time.sleep(0.3)
        fwd._read_beidou()
        if payload is stale:
            assert restored.state(late.id) == "pending"
    assert restored.state(late.id) == ACKED


def _retire(fwd: Forwarder) -> None:
    fwd.close()
    fwd.mqtt.stop()  # one MQTT session per drone: the next loop's client takes the same id


def box_alert(box: Outbox, alert_id: str):
    from comms import alert_json

    return next(alert_json.from_json(d)[0] for d in box.alerts() if d["id"] == alert_id)


def test_a_canary_on_a_longer_class_list_and_a_station_that_lacks_it(home, tmp_path):
    csq = {"now": None}
    canary_box, fleet_box = Outbox(tmp_path / "c.db", "UAV-07"), Outbox(tmp_path / "f.db", "UAV-08")
    canary, fleet = home.drone(canary_box, 7, csq), home.drone(fleet_box, 8, csq)
    flash = new_alert(canary_box, cls="flashover", class_list_version=2)
    canary_box.put(flash)
    defect = new_alert(fleet_box)
    fleet_box.put(defect)

    def tick() -> None:
        canary.tick()
        fleet.tick()

    assert until(lambda: flash.id in home.store.stored and defect.id in home.store.stored, 15, tick)
    assert home.store.stored[flash.id]["class"] == "flashover"
    assert home.store.stored[flash.id]["class_list_version"] == 2
    assert home.store.stored[defect.id]["class"] == "defect"

    # A ground station that knows version 1 only: it refuses the canary's message, signed; the
    # drone stops sending it by BeiDou and it waits for 4G, while the other drone goes on.
    home.run_station({1: LISTS[1]})
    flash2 = new_alert(canary_box, cls="flashover", class_list_version=2)
    canary_box.put(flash2)
    defect2 = new_alert(fleet_box)
    fleet_box.put(defect2)
    assert until(lambda: canary_box.beidou_refused(flash2.id) == "unknown_class_list", 15, tick)
    assert until(lambda: defect2.id in home.store.stored, 15, tick)
    sent = canary.stats.beidou_messages
    deadline = time.monotonic() + 8 * home.freq  # twice the re-send interval: nothing goes again
    while time.monotonic() < deadline:
        tick()
        time.sleep(0.05)
    assert canary.stats.beidou_messages == sent and flash2.id not in home.store.stored
    assert home.station.stats.refusal_messages >= 1
    csq["now"] = 25  # 4G returns
    assert until(lambda: flash2.id in home.store.stored, 10, tick)
    doc = home.store.stored[flash2.id]
    assert doc["class"] == "flashover" and doc["beidou_refused"] == "unknown_class_list"
    assert until(lambda: canary_box.state(flash2.id) == ACKED, 5, tick)


def test_4g_returning_while_the_terminal_makes_the_drone_wait_a_minute(home, tmp_path):
    """The terminal refuses for 60 s (service interval) while 4G is down; 4G comes back during the
    wait: the loop has gone on ticking, switches, and delivers by MQTT within two ticks; the
    terminal never transmits it, so nothing goes twice."""
    sim, terminal = home.terminal(7, service_frequency_s=60.0)
    sim.last_send = sim.now()  # it sent a minute's message just now (before this boot's driver knew)
    csq = {"now": 2}
    box = Outbox(tmp_path / "o.db", "UAV-07")
    fwd = home.drone(box, 7, csq, terminal)
    alert = new_alert(box)
    box.put(alert)
    assert until(lambda: fwd.selector.link == BEIDOU and fwd._job is not None, 5, fwd.tick)
    assert until(lambda: sim.refused >= 1, 5)
    durations = []
    for _ in range(5):  # the send waits in its own thread: the loop goes on
        t0 = time.monotonic()
        fwd.tick()
        durations.append(time.monotonic() - t0)
        time.sleep(0.1)
    assert max(durations) < 0.5 and box.state(alert.id) == "pending" and not fwd._job.done.is_set()
    csq["now"] = 25
    ticks = 0
    while alert.id not in home.store.stored and ticks < 5:
        fwd.tick()
        ticks += 1
        if ticks == 1:
            assert fwd.selector.link == MQTT
        time.sleep(0.2)
    assert ticks <= 2, f"delivered after {ticks} ticks"
    assert until(lambda: box.state(alert.id) == ACKED, 5, fwd.tick)
    assert sim.sent == 0 and home.store.ids.count(alert.id) == 1 and fwd.stats.beidou_cancelled == 1


def test_pre_2020_and_unpackable_alerts_reach_home_by_mqtt_with_their_flags(home, tmp_path, monkeypatch):
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)  # the drone's clock stepped back an hour
    csq = {"now": None}
    box = Outbox(tmp_path / "o.db", "UAV-07")
    fwd = home.drone(box, 7, csq, resend_after_s=1.0)
    unset = box.put(new_alert(box, time=datetime(2000, 1, 1, tzinfo=UTC)))
    odd = new_alert(box, class_list_version=None)  # a model on an unversioned class list
    box.put(odd)
    box.put(normal := new_alert(box))
    assert until(lambda: unset.id in home.store.stored and normal.id in home.store.stored, 15, fwd.tick)
    assert home.store.stored[unset.id]["flags"] == ["time_restamped"]  # the BeiDou form carries the flag
    assert box.beidou_refused(odd.id).startswith("unpackable") and fwd.stats.unpackable == 1
    assert odd.id not in home.store.stored  # never by BeiDou, and the loop went on
    csq["now"] = 25
    assert until(lambda: set(box.counts()) == {ACKED}, 15, fwd.tick), box.counts()
    doc = home.store.stored[odd.id]
    assert doc["beidou_refused"].startswith("unpackable: its class list has no version")
    assert doc["class"] == "defect" and doc["class_list_version"] is None


def test_pli_link_status_says_what_is_unsent_by_severity(tmp_path):
    from comms.device import DeviceConfig

    DeviceConfig("UAV-07", "fleet1", 7, GROUND).save(tmp_path / "device.json")
    box = Outbox(tmp_path / "o.db", "UAV-07", "fleet1")
    alerts = [new_alert(box, s) for s in (Severity.HIGH, Severity.HIGH, Severity.MEDIUM, Severity.LOW)]
    for a in alerts:
        box.put(a)
    box.mark_sent([alerts[0].id], "beidou")
    box.mark_sent([alerts[2].id], "mqtt")
    box.refuse([alerts[0].id], "too_old", "beidou")
    box.close()
    cmd = [sys.executable, "-m", "pli", "link", "status", "--config", str(tmp_path / "device.json"), "--outbox",
           str(tmp_path / "o.db")]
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    status = json.loads(out.stdout)
    assert status["unsent_by_severity"] == {
        "high": {"pending": 1, "sent_beidou, BeiDou refused: MQTT only": 1}, "medium": {"sent_mqtt": 1},
        "low": {"pending": 1}}
    assert status["epoch"] == 1 and not status["safe_to_power_off"]  # a look from outside: no new epoch
    text = subprocess.run(cmd, capture_output=True, text=True)
    assert "NOT safe to power off: 4 alerts unacknowledged (2 high severity)" in text.stdout
    box = Outbox(tmp_path / "o.db", "UAV-07")
    box.ack([a.id for a in alerts])
    box.close()
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0 and "safe to power off" in done.stdout


def test_the_readme_flow_keeps_one_id_per_alert_end_to_end(broker, exported_fp32, flight, tmp_path):
    """device init, edge run, ground run and link run as the README gives them (in the drone's
    working folder, so the device file is found), over BeiDou: each alert arrives under the id the
    edge gave it; another identity on the outbox is refused in one line; after a re-run of device
    init a second flight goes home too, under new ids."""
    from comms.modem_sim import SimModem

    net = Network()
    sims = [SimTerminal(TerminalConfig(address=a, service_frequency_s=0.3, delay_s=0.05, bsi_interval_s=0.1), net)
            .start() for a in (ADDRESS[7], GROUND)]
    modem = SimModem(lambda t: 2).start()  # over the ridge: BeiDou only
    (tmp_path / "keys.json").write_text(json.dumps({"7": {"drone_id": "UAV-07", "key_hex": KEYS[7][1].hex()}}))
    env = {**__import__("os").environ, "PLI_DEVICE_KEY": KEYS[7][1].hex()}
    pli = [sys.executable, "-m", "pli"]

    def run(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([*pli, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, **kw)

    init = ["device", "init", "--drone-id", "UAV-07", "--key-id", "7", "--ground-address", GROUND, "--mqtt-port",
            str(broker.port)]
    edge = ["edge", "run", "--source", str(flight.out / "images"), "--model", str(exported_fp32), "--outbox",
            "outbox.db", "--conf", "0.05"]
    ground = subprocess.Popen([*pli, "ground", "run", "--port", sims[1].device, "--keys", "keys.json", "--mqtt-port",
                               str(broker.port), "--beidou-acks"], cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    store = Store(broker.port)
    link = ["link", "run", "--outbox", "outbox.db", "--beidou-port", sims[0].device, "--modem-port", modem.device,
            "--beidou-acks", "--interval", "0.1", "--until-empty"]
    try:
        assert run(*init).returncode == 0
        out = run(*edge)
        assert out.returncode == 0, out.stderr
        made = [a["id"] for a in Outbox(tmp_path / "outbox.db", "UAV-07", new_epoch=False).alerts()]
        assert made and all(i.startswith("UAV-07-00001-") for i in made)
        sent = run(*link)
        assert sent.returncode == 0, sent.stderr[-2000:]
        assert set(store.stored) == set(made)  # one id per alert, edge to cloud, through the ground station

        other = run("edge", "run", "--drone-id", "UAV-99", *edge[2:])
        assert other.returncode == 2 and "belongs to drone UAV-07" in other.stderr
        assert len([line for line in other.stderr.splitlines() if line.startswith("pli: error")]) == 1, other.stderr

        assert run(*init).returncode == 0  # re-provisioned: same identity, the outbox goes on
        assert run(*edge).returncode == 0
        second = [a["id"] for a in Outbox(tmp_path / "outbox.db", "UAV-07", new_epoch=False).alerts()
                  if a["id"] not in made]
        assert second and all(parse_alert_id(i)[1] > 1 for i in second)
        assert run(*link).returncode == 0
        assert set(store.stored) == set(made + second) and len(store.ids) >= len(made + second)
        status = run("link", "status", "--outbox", "outbox.db")
        assert status.returncode == 0 and "safe to power off" in status.stdout
    finally:
        ground.kill()
        ground.wait()
        store.stop()
        modem.stop()
        for sim in sims:
            sim.stop()
