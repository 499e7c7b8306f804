"""The BeiDou driver against simulated terminals, through the real serial path (pyserial on a pty)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from factories import new_alert

from comms.alert import Alert
from comms.alert_pack import pack, unpack
from comms.beidou.driver import Driver
from comms.beidou.protocol import BINARY_40, TEXT_21, TEXT_BDS3
from comms.beidou.sim import Network, SimTerminal, TerminalConfig, outage
from comms.classes import Severity
from comms.replay import NEW, REPLAY, ReplayGuard

DRONE, GROUND = "0247718", "0179773"
KEY = b"drone key from the environment"


@pytest.fixture(params=[TEXT_21, BINARY_40, TEXT_BDS3])
def link(request):
    """Simulated terminals of one dialect; the drivers are not told which and must detect it."""
    net = Network()
    started = []

    def make(address: str, **kw) -> tuple[SimTerminal, Driver]:
        sim = SimTerminal(TerminalConfig(address=address, bsi_interval_s=0.1, dialect=request.param, **kw),
                          net).start()
        drv = Driver(sim.device)
        assert drv.card.dialect == request.param
        started.append((sim, drv))
        return sim, drv

    yield make
    for sim, drv in started:
        drv.close()
        sim.stop()


def test_card_is_read_and_sends_are_paced_to_its_service_frequency(link):
    sim, drone = link(DRONE, service_frequency_s=2, delay_s=0.1)
    _, ground = link(GROUND, service_frequency_s=2)
    assert drone.card.address == DRONE and drone.card.service_frequency_s == 2
    # level 3: 628 bits, 77 bytes after the mixed-mode marker; BDS-3 at the global 560 bits, sent as code
    assert (drone.card.capacity_bits, drone.card.payload_bytes) == {
        TEXT_21: (628, 77), BINARY_40: (628, 77), TEXT_BDS3: (560, 70)}[drone.card.dialect]
    t0 = time.monotonic()
    assert drone.send(GROUND, b"first").ok and drone.send(GROUND, b"second").ok
    assert time.monotonic() - t0 >= 1.9 and sim.refused == 0  # waited, not refused
    got = [ground.receive(timeout=3), ground.receive(timeout=3)]
    assert got == [(DRONE, b"first"), (DRONE, b"second")]


def test_a_refusal_is_retried_after_the_terminal_wait(link):
    sim, drone = link(DRONE, service_frequency_s=2, delay_s=0.1)
    link(GROUND)
    assert drone.send(GROUND, b"a").ok
    drone.last_send = None  # as after a restart of the driver: it does not know the last send
    result = drone.send(GROUND, b"b")
    assert result.ok and result.attempts == 2 and sim.refused == 1


def test_no_beam_power_means_no_send(link):
    _, drone = link(DRONE, service_frequency_s=0.5, profile=outage(0, 3600))
    link(GROUND)
    time.sleep(0.4)
    assert not drone.beam_ok()
    result = drone.send(GROUND, b"x", retries=1)
    # 2.1 has no "no signal" code: the terminal reports a system inhibit
    assert not result.ok and ("no_signal" in result.reason or "inhibit" in result.reason)


def test_lost_messages_never_arrive(link):
    _, drone = link(DRONE, service_frequency_s=0.2, loss=1.0, delay_s=0.05)
    _, ground = link(GROUND)
    assert drone.send(GROUND, b"gone").ok  # the terminal accepted it; the satellite lost it
    assert ground.receive(timeout=0.5) is None


def test_signed_alert_batches_cross_and_replays_are_refused(link, tmp_path):
    _, drone = link(DRONE, service_frequency_s=1, delay_s=0.05)
    _, ground = link(GROUND)
    t = datetime(2026, 11, 22, 10, tzinfo=UTC)
    alerts = [Alert("UAV-07", i, "F1", t + timedelta(seconds=i), 25.2, 102.5, 1650.0, "defect", 0.9,
                    Severity.HIGH, tower_id="T03", epoch=2, class_list_version=1) for i in range(1, 4)]
    packed = pack(alerts, 7, KEY, drone.card.payload_bytes)
    assert len(packed.alerts) == (2 if drone.card.dialect == TEXT_BDS3 else 3)
    alerts = alerts[:len(packed.alerts)]
    for _ in range(2):  # the second time is a replay
        assert drone.send(GROUND, packed.payload).ok
    guard = ReplayGuard(tmp_path / "replay.db")
    results = []
    for _ in range(2):
        sender, payload = ground.receive(timeout=3)
        got = unpack(payload, lambda key_id: ("UAV-07", KEY))
        results.append(guard.accept("UAV-07", got.epoch, got.seqs))
        assert [a.id for a in got.alerts] == [a.id for a in alerts] and sender == DRONE
    assert results == [[NEW] * len(alerts), [REPLAY] * len(alerts)]


def test_a_terminal_that_goes_away_fails_sends_without_raising(link):
    sim, drone = link(DRONE, service_frequency_s=0.2)
    sim.stop()  # unplugged
    result = drone.send(GROUND, b"x", retries=1, feedback_timeout_s=0.3)
    assert not result.ok and result.attempts <= 2 and result.reason  # gives up at once when the port is gone


def test_terminals_of_different_dialects_talk_across_the_satellite():
    net = Network()
    sims = [SimTerminal(TerminalConfig(address=a, dialect=d, service_frequency_s=1, delay_s=0.05, bsi_interval_s=0.1),
                        net).start() for a, d in ((DRONE, TEXT_BDS3), (GROUND, BINARY_40))]
    drivers = [Driver(sim.device) for sim in sims]
    try:
        drone, ground = drivers
        assert (drone.card.dialect, ground.card.dialect) == (TEXT_BDS3, BINARY_40)
        deadline = time.monotonic() + 3
        while not drone.beam_ok() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert drone.beam_ok()
        assert drone.send(GROUND, bytes(range(70))).ok
        assert ground.receive(timeout=3) == (DRONE, bytes(range(70)))
    finally:
        for drv, sim in zip(drivers, sims, strict=True):
            drv.close()
            sim.stop()


def test_a_terminal_that_does_not_speak_the_named_dialect_is_a_clear_error():
    from comms.beidou.driver import TerminalError

    sim = SimTerminal(TerminalConfig(address=DRONE, dialect=TEXT_21), Network()).start()
    try:
        with pytest.raises(TerminalError, match=r"did not answer the card query \(dialect 4\.0"):
            Driver(sim.device, dialect=BINARY_40, card_timeout_s=1.5)
    finally:
        sim.stop()


def test_pli_beidou_sim_serves_a_driver_from_another_process():
    import json
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "pli", "beidou", "sim", "--freq", "0.5", "--delay", "0.1",
                             "--dialect", "bds3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        devices = json.loads(proc.stdout.readline())
        drone, ground = Driver(devices["drone"]["device"]), Driver(devices["ground"]["device"])
        try:
            assert drone.card.address == devices["drone"]["address"] and drone.card.service_frequency_s == 0.5
            assert drone.card.dialect == ground.card.dialect == "bds3"
            assert drone.send(ground.card.address, b"over the ridge").ok
            assert ground.receive(timeout=3) == (drone.card.address, b"over the ridge")
        finally:
            drone.close()
            ground.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "sent 1" in err


def test_pli_ground_run_on_a_silent_port_is_one_error_line(tmp_path):
    import json
    import os
    import subprocess
    import sys
    import tty

    (tmp_path / "keys.json").write_text(json.dumps({"7": {"drone_id": "UAV-07", "key_hex": KEY.hex()}}))
    master, slave = os.openpty()  # a serial port with no terminal behind it
    tty.setraw(slave)
    try:
        r = subprocess.run([sys.executable, "-m", "pli", "ground", "run", "--port", os.ttyname(slave), "--keys",
                            str(tmp_path / "keys.json"), "--replay-db", str(tmp_path / "r.db"), "--mqtt-port", "1"],
                           capture_output=True, text=True, timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "answered no card query in any dialect" in r.stderr.splitlines()[-1]


def test_pli_beidou_sim_outage_and_power_reach_the_driver():
    import json
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "pli", "beidou", "sim", "--freq", "1", "--outage", "0:3600",
                             "--power", "4", "--dialect", "4.0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        devices = json.loads(proc.stdout.readline())
        drone, ground = Driver(devices["drone"]["device"]), Driver(devices["ground"]["device"])
        try:
            deadline = time.monotonic() + 5
            while (drone.last_bsi is None or ground.last_bsi is None) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not drone.beam_ok() and not any(drone.powers)  # behind the ridge for the whole hour
            assert ground.beam_ok() and max(ground.powers) == 4
        finally:
            drone.close()
            ground.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


def test_a_terminal_unplugged_mid_flight_is_opened_again_and_sending_goes_on(tmp_path):
    import threading

    from waiting import until

    from comms.forwarder import Forwarder
    from comms.local_broker import free_port
    from comms.mqtt_link import MqttConfig, MqttLink
    from comms.outbox import Outbox
    from comms.selector import LinkSelector

    net = Network()
    cfg = dict(service_frequency_s=0.2, delay_s=0.05, bsi_interval_s=0.1)
    first = SimTerminal(TerminalConfig(address=DRONE, **cfg), net).start()
    ground_sim = SimTerminal(TerminalConfig(address=GROUND, **cfg), net).start()
    ground = Driver(ground_sim.device)
    port = tmp_path / "ttyBD0"  # the udev name: it outlives the device behind it
    port.symlink_to(first.device)
    box = Outbox(tmp_path / "o.db", "UAV-07")
    fwd = Forwarder(box, MqttLink(box, MqttConfig(port=free_port())), None, LinkSelector(), lambda: None, 7, KEY,
                    GROUND)  # no 4G: BeiDou or nothing
    stop = threading.Event()
    t = datetime(2026, 11, 22, 10, tzinfo=UTC)

    def raise_alerts(n: int) -> None:
        for _ in range(n):
            box.put(new_alert(box, time=t))

    replacement = None
    try:
        fwd.open_beidou(lambda: Driver(str(port)), stop, every_s=0.3)
        raise_alerts(3)
        assert until(lambda: box.counts() == {"sent_beidou": 3}, 10, fwd.tick)
        first.stop()  # unplugged
        replacement = SimTerminal(TerminalConfig(address=DRONE, **cfg), net).start()
        port.unlink()
        port.symlink_to(replacement.device)  # plugged back in, as a new device
        raise_alerts(3)
        assert until(lambda: box.counts() == {"sent_beidou": 6}, 20, fwd.tick), box.counts()
        assert replacement.sent >= 1
        got = []
        while (m := ground.receive(timeout=1)) is not None:
            got += unpack(m[1], lambda k: ("UAV-07", KEY)).seqs
        assert set(got) == {1, 2, 3, 4, 5, 6}  # at least once: the ground station's window drops repeats
    finally:
        stop.set()
        if fwd.beidou is not None:
            fwd.beidou.close()
        ground.close()
        for sim in (first, ground_sim, replacement):
            if sim is not None:
                sim.stop()
