"""The modem's signal over the real serial path: AT+CSQ to a simulated modem on a pty."""

from __future__ import annotations

import os
import time
import tty

import pytest

from comms.modem import Modem
from comms.modem_sim import SimModem


@pytest.fixture
def modem():
    made = []

    def make(profile, **kw) -> tuple[SimModem, Modem]:
        sim = SimModem(profile, **kw).start()
        reader = Modem(sim.device, timeout_s=0.5)
        made.append((sim, reader))
        return sim, reader

    yield make
    for sim, reader in made:
        reader.close()
        sim.stop()


@pytest.mark.parametrize("echo", [True, False])
def test_signal_follows_the_profile_through_echo_and_unsolicited_codes(modem, echo):
    level = {"now": 23}
    _, reader = modem(lambda t: level["now"], echo=echo)
    assert reader.csq() == 23
    level["now"] = 4
    assert reader.csq() == 4
    level["now"] = None  # the modem says 99: unknown
    assert reader.csq() is None


def test_readings_are_cached_for_the_minimum_interval(modem):
    sim, _ = modem(lambda t: 18)
    reader = Modem(sim.device, timeout_s=0.5, min_interval_s=0.3)
    try:
        assert [reader() for _ in range(5)] == [18] * 5 and sim.queries == 1
        time.sleep(0.35)
        assert reader() == 18 and sim.queries == 2
    finally:
        reader.close()


def test_a_silent_port_reads_as_unknown_within_the_timeout():
    master, slave = os.openpty()  # a port with nothing answering behind it
    tty.setraw(slave)
    reader = Modem(os.ttyname(slave), timeout_s=0.3)
    try:
        t0 = time.monotonic()
        assert reader.csq() is None
        assert time.monotonic() - t0 < 1.0
    finally:
        reader.close()
        os.close(master)
        os.close(slave)


def test_a_port_that_goes_away_reads_as_unknown_and_is_reopened(modem, tmp_path):
    sim, _ = modem(lambda t: 20)
    link = tmp_path / "ttyUSB2"  # how a udev rule names the modem: the path outlives the device
    link.symlink_to(sim.device)
    reader = Modem(str(link), timeout_s=0.3)
    try:
        assert reader.csq() == 20
        sim.stop()
        assert reader.csq() is None
        replacement = SimModem(lambda t: 12).start()
        link.unlink()
        link.symlink_to(replacement.device)
        try:
            assert reader.csq() == 12  # reopened by its path
            assert reader.errors >= 1
        finally:
            replacement.stop()
    finally:
        reader.close()


def test_pli_modem_csq_prints_readings_and_fails_on_a_silent_port(modem):
    import json
    import subprocess
    import sys

    sim, _ = modem(lambda t: 27)
    r = subprocess.run([sys.executable, "-m", "pli", "modem", "csq", "--port", sim.device, "--every", "0.05",
                        "--count", "3"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["csq"] for line in r.stdout.splitlines()] == [27, 27, 27]
    master, slave = os.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "pli", "modem", "csq", "--port", os.ttyname(slave), "--timeout",
                            "0.3"], capture_output=True, text=True, timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 2 and json.loads(r.stdout)["csq"] is None and "did not answer" in r.stderr
