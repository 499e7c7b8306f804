"""The BeiDou driver against simulated terminals, through the real serial path (pyserial on a pty)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from comms.alert import Alert
from comms.alert_pack import pack, unpack
from comms.beidou.driver import Driver
from comms.beidou.sim import Network, SimTerminal, TerminalConfig, outage
from comms.classes import Severity
from comms.replay import ReplayGuard

DRONE, GROUND = "0247718", "0179773"
KEY = b"drone key from the environment"


@pytest.fixture
def link():
    net = Network()
    started = []

    def make(address: str, **kw) -> tuple[SimTerminal, Driver]:
        sim = SimTerminal(TerminalConfig(address=address, bsi_interval_s=0.1, **kw), net).start()
        drv = Driver(sim.device)
        started.append((sim, drv))
        return sim, drv

    yield make
    for sim, drv in started:
        drv.close()
        sim.stop()


def test_card_is_read_and_sends_are_paced_to_its_service_frequency(link):
    sim, drone = link(DRONE, service_frequency_s=1.5, delay_s=0.1)
    _, ground = link(GROUND, service_frequency_s=1.5)
    assert drone.card.address == DRONE and drone.card.service_frequency_s == 1.5
    assert drone.card.capacity_bits == 628 and drone.card.mixed_payload_bytes == 77
    t0 = time.monotonic()
    assert drone.send(GROUND, b"first").ok and drone.send(GROUND, b"second").ok
    assert time.monotonic() - t0 >= 1.4 and sim.refused == 0  # waited, not refused
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
    assert not result.ok and "inhibit 1" in result.reason


def test_lost_messages_never_arrive(link):
    _, drone = link(DRONE, service_frequency_s=0.2, loss=1.0, delay_s=0.05)
    _, ground = link(GROUND)
    assert drone.send(GROUND, b"gone").ok  # the terminal accepted it; the satellite lost it
    assert ground.receive(timeout=0.5) is None


def test_signed_alert_batches_cross_and_replays_are_refused(link, tmp_path):
    _, drone = link(DRONE, service_frequency_s=0.3, delay_s=0.05)
    _, ground = link(GROUND)
    t = datetime(2026, 11, 22, 10, tzinfo=UTC)
    alerts = [Alert("UAV-07", i, "F1", t + timedelta(seconds=i), 25.2, 102.5, 1650.0, "defect", 0.9,
                    Severity.HIGH, tower_id="T03") for i in range(1, 4)]
    packed = pack(alerts, 7, KEY, drone.card.mixed_payload_bytes)
    assert len(packed.alerts) == 3
    for _ in range(2):  # the second time is a replay
        assert drone.send(GROUND, packed.payload).ok
    guard = ReplayGuard(tmp_path / "replay.db")
    results = []
    for _ in range(2):
        sender, payload = ground.receive(timeout=3)
        got = unpack(payload, lambda key_id: ("UAV-07", KEY))
        results.append(guard.accept("UAV-07", [a.seq for a in got]))
        assert [a.id for a in got] == [a.id for a in alerts] and sender == DRONE
    assert results == [[True] * 3, [False] * 3]


def test_pli_beidou_sim_serves_a_driver_from_another_process():
    import json
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "pli", "beidou", "sim", "--freq", "0.5", "--delay", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        devices = json.loads(proc.stdout.readline())
        drone, ground = Driver(devices["drone"]["device"]), Driver(devices["ground"]["device"])
        try:
            assert drone.card.address == devices["drone"]["address"] and drone.card.service_frequency_s == 0.5
            assert drone.send(ground.card.address, b"over the ridge").ok
            assert ground.receive(timeout=3) == (drone.card.address, b"over the ridge")
        finally:
            drone.close()
            ground.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "sent 1" in err
