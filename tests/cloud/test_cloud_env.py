"""The cloud without torch: `.venv-cloud` holds only `pip install .[cloud]` (scripts/setup.sh),
and from it `pli cloud serve` answers and `pli cloud ingest` stores a drone's alerts from a real
Mosquitto, while `import torch` fails there. The learning worker's `learn` extra adds torch."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from factories import fill
from sqlalchemy import func, select
from waiting import until

from cloud.db import session_scope
from cloud.models import Alert
from comms.mqtt_link import MqttConfig, MqttLink
from comms.outbox import ACKED, Outbox

pytestmark = pytest.mark.slow
CLOUD_ENV = Path(__file__).resolve().parents[2] / ".venv-cloud"


@pytest.fixture(scope="module")
def cloud_python() -> Path:
    python = CLOUD_ENV / "bin" / "python"
    if not python.exists():  # a missing environment fails: scripts/setup.sh makes it
        pytest.fail(f"{python} is missing: run `bash scripts/setup.sh cloud`")
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torch_cannot_be_imported_where_only_the_cloud_extra_is_installed(cloud_python):
    r = subprocess.run([str(cloud_python), "-c", "import torch"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    r = subprocess.run([str(cloud_python), "-c", "import ultralytics"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "No module named 'ultralytics'" in r.stderr


def test_the_cloud_extra_alone_serves_the_api_and_ingests_alerts(cloud_python, broker, tmp_path):
    env = {**os.environ, "PLI_CLOUD_DIR": str(tmp_path / "cloud")}
    env.pop("PLI_DATABASE_URL", None)
    pli = str(cloud_python.parent / "pli")
    port = _free_port()
    serve = subprocess.Popen([pli, "cloud", "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    ingest = subprocess.Popen([pli, "cloud", "ingest", "--mqtt-port", str(broker.port), "--name", "ingest-env",
                               "--create"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    box = Outbox(tmp_path / "o.db", "UAV-07")
    ids = fill(box, 12)
    link = MqttLink(box, MqttConfig(port=broker.port), resend_after_s=1)
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert until(healthy, 60), serve.poll()
        link.start()
        assert until(lambda: box.counts() == {ACKED: 12}, 60, link.pump), box.counts()
        with session_scope(f"sqlite:///{tmp_path / 'cloud' / 'pli.db'}") as s:
            assert set(s.scalars(select(Alert.id))) == set(ids)
            assert s.scalar(select(func.count()).select_from(Alert)) == 12
    finally:
        link.stop()
        for proc in (serve, ingest):
            proc.send_signal(signal.SIGTERM)
        outs = [proc.communicate(timeout=30)[0] for proc in (serve, ingest)]
    assert ingest.returncode == 0, outs[1][-2000:]
