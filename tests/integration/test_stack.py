"""scripts/stack.sh brings up docker-compose.yml's services as processes (real Mosquitto with its
users, ACL and TLS; PostgreSQL with a password from a secret file; Redis; the S3 emulator; Label
Studio; the API; two ingest workers; the job worker; the ground station on a simulated BeiDou
terminal), each passing its own compose health check, and one drone's alert goes through it:
over TLS to the broker, stored once by one of the two ingest workers, acknowledged back to the
drone, and read from the API with an operator token."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from factories import fill
from waiting import until

from comms.mqtt_link import MqttConfig, MqttLink, broker_user
from comms.outbox import ACKED, Outbox

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from stack import Stack  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def stack_dir():
    folder = Path(tempfile.mkdtemp(prefix="pli-stack-"))  # PostgreSQL's own user must pass through it
    folder.chmod(0o711)
    yield folder
    subprocess.run(["bash", "scripts/stack.sh", "down", "--dir", str(folder / "run")], cwd=REPO, capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def test_the_stack_comes_up_healthy_and_carries_one_alert_home(stack_dir):
    secrets, run = stack_dir / "secrets", stack_dir / "run"
    sim = subprocess.Popen([str(REPO / ".venv" / "bin" / "pli"), "beidou", "sim"], stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        terminals = json.loads(sim.stdout.readline())
        env = {**os.environ, "PLI_BEIDOU_SERIAL": terminals["ground"]["device"]}
        base = ["bash", "scripts/stack.sh"]
        args = ["--dir", str(run), "--secrets", str(secrets)]
        done = subprocess.run([*base, "init", *args], cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        done = subprocess.run([*base, "up", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr + _logs(run)
        for name in ("mosquitto", "postgres", "redis", "objects", "label-studio", "api", "ingest-1", "ingest-2",
                     "worker", "ground"):
            assert f"  {name}: healthy at 127.0.77." in done.stdout, done.stdout

        stack = Stack(run, secrets_dir=secrets, env=env)
        api, broker = stack.services["api"], stack.services["mosquitto"]
        drone_pw = json.loads((secrets / "mosquitto" / "drone_passwords.json").read_text())
        box = Outbox(stack_dir / "outbox.db", "UAV-01")
        ids = fill(box, 1)
        cfg = MqttConfig(host=broker.ip, port=8883, fleet="fleet1", username=broker_user("fleet1", "UAV-01"),
                         password=drone_pw["fleet1/UAV-01"], tls_ca=str(secrets / "mosquitto" / "certs" / "ca.crt"))
        link = MqttLink(box, cfg, resend_after_s=1)
        link.start()
        try:
            assert until(lambda: box.counts() == {ACKED: 1}, 60, link.pump), box.counts()
        finally:
            link.stop()
        made = subprocess.run(["pli", "-q", "cloud", "token", "create", "--name", "ops", "--role", "operator"],
                              env=stack.environment(api), capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        got = httpx.get(f"http://{api.ip}:8000/alerts", headers={"Authorization": f"Bearer {made.stdout.strip()}"},
                        timeout=10)
        assert got.status_code == 200, got.text
        assert [a["id"] for a in got.json()["items"]] == ids  # stored once, by one of the two workers

        done = subprocess.run([*base, "status", *args], cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.count("healthy") == 10, done.stdout
        done = subprocess.run([*base, "down", *args], cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.count("stopped") == 10, done.stdout
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{api.ip}:8000/health", timeout=2)
    finally:
        os.killpg(sim.pid, signal.SIGTERM)
        sim.wait(10)


def _logs(run: Path) -> str:
    return "".join(f"\n--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((run / "logs").glob("*.log")))
