"""Shared fixtures. ultralytics is configured for offline use before anything imports it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="pli-yolo-cfg-"))

REPO = Path(__file__).resolve().parents[1]
CPLID = Path(os.environ.get("PLI_CPLID", REPO.parent / "shared" / "datasets" / "cplid"))


@pytest.fixture(scope="session")
def cplid() -> Path:
    if not (CPLID / "Normal_Insulators").is_dir():
        pytest.skip(f"CPLID not found at {CPLID}")
    return CPLID


@pytest.fixture(scope="session")
def flight(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic flight shared by the tests that only read it."""
    from training.synth.flight import generate_flight

    out = tmp_path_factory.mktemp("flight")
    return generate_flight(out, frames=10, size=(960, 540), seed=8, progress=False)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """YOLOv8n trained for under a CPU minute on tiles of a busy flight, and its dataset."""
    from training.synth.flight import generate_flight
    from training.tiles import tile_dataset
    from training.train import train

    work = tmp_path_factory.mktemp("tiny")
    busy = generate_flight(work / "flight", frames=24, size=(960, 540), seed=7, progress=False)
    tile_dataset(busy.out, work / "tiles", size=320, overlap=0.2, keep_empty=0.1, seed=0, progress=False)
    data = work / "tiles" / "data.yaml"
    data.write_text(data.read_text().replace("train: images/train", "train: images/train\nval: images/train"))
    result = train(data, "yolov8n.yaml", imgsz=160, epochs=20, batch=4, project=work / "runs", name="tiny", seed=0,
                   val=False)
    return result, data


@pytest.fixture(scope="session")
def exported_fp32(tiny_model, tmp_path_factory):
    """The tiny model as ONNX with a dynamic batch (tiles in one session call)."""
    from training.export import export_model

    result, _ = tiny_model
    return export_model(result.last, tmp_path_factory.mktemp("onnx") / "tiny-dyn.onnx", imgsz=160,
                        dynamic_batch=True, conf=0.2).onnx


@pytest.fixture
def broker(tmp_path):
    """A real Mosquitto broker on a free loopback port (restartable: stop(), start())."""
    from comms.local_broker import LocalBroker

    try:
        b = LocalBroker(tmp_path / "broker").start()
    except FileNotFoundError as exc:  # a missing service fails the test: scripts/setup.sh installs it
        pytest.fail(str(exc))
    yield b
    b.stop()


@pytest.fixture
def ingest(broker, db_url):
    """An ingest worker on its own thread, against the broker and a fresh database; yields (worker, url)."""
    import threading

    from cloud.ingest import IngestWorker
    from comms.mqtt_link import MqttConfig

    worker = IngestWorker(MqttConfig(port=broker.port), db_url, name="ingest-test", linger_s=0.02).start()
    assert worker.subscribed.wait(5)
    stop = threading.Event()
    t = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    t.start()
    yield worker, db_url
    stop.set()
    t.join(5)
    worker.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (Debian's packages), started once per test session on loopback."""
    from cloud.local_postgres import LocalPostgres

    try:
        pg = LocalPostgres().start()
    except FileNotFoundError as exc:  # a missing service fails the test: scripts/setup.sh installs it
        pytest.fail(str(exc))
    yield pg
    pg.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_db(request, tmp_path):
    """Makes fresh, migrated databases on each backend: SQLite files, or new databases on the server."""
    import uuid

    from cloud.db import upgrade

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / name}.db"
        else:
            import psycopg

            pg = request.getfixturevalue("postgres")
            with psycopg.connect(f"host=127.0.0.1 port={pg.port} user={pg.user} dbname=postgres",
                                 autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{name}"')
            url = pg.url.rsplit("/", 1)[0] + f"/{name}"
        upgrade(url)
        return url

    return make


@pytest.fixture
def db_url(new_db):
    """A fresh, migrated database on each backend."""
    return new_db()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio server (its own venv, .venv-ls), started once per test session on
    loopback with a fresh data folder (its admin and API token are made on first boot)."""
    from annotation.server import LabelStudioServer

    try:
        server = LabelStudioServer(tmp_path_factory.mktemp("label-studio")).start()
    except FileNotFoundError as exc:  # a missing service fails the test: scripts/setup.sh installs it
        pytest.fail(str(exc))
    yield server
    server.stop()
