"""What each drone says it runs: its retained status (edge/status.py), into the deployments.

A drone's deployment rows follow its reports: a new row when it runs another release or the
same one in another state (trial, then good), the latest report kept on the row. Only the drone
itself may write its status topic (the broker's ACL, cloud/registry/acl.py), and a report
naming another drone than its topic is refused. The canary's health (rollout.health) reads the
distance flown and the crashes from here.
"""

from __future__ import annotations

import json
import logging
import threading

import paho.mqtt.client as mqtt
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db import sessions
from cloud.models import Deployment, ModelRelease
from comms.mqtt_link import MqttConfig, connect, make_client

log = logging.getLogger(__name__)
SCHEMA = "pli.status/1"
STATES = ("trial", "good", "given")


class ReportError(ValueError):
    pass


def parse(topic: str, payload: bytes) -> tuple[str, str, dict]:
    """(fleet, drone, report) of a status message; ReportError (one line) when it is not one."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "pli" or parts[3] != "status":
        raise ReportError(f"{topic}: not a status topic")
    try:
        doc = json.loads(payload)
    except ValueError:
        raise ReportError(f"{topic}: not JSON") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ReportError(f"{topic}: not a {SCHEMA} report")
    if doc.get("drone") != parts[2]:
        raise ReportError(f"{topic}: the report names drone {doc.get('drone')!r}, not its topic's {parts[2]}")
    if doc.get("state") not in STATES:
        raise ReportError(f"{topic}: state {doc.get('state')!r}, expected one of {STATES}")
    return parts[1], parts[2], doc


def record(session: Session, topic: str, payload: bytes) -> Deployment | None:
    """Store a report; the drone's deployment row, or None for a model no release holds (the
    model it left the factory with)."""
    _, drone, doc = parse(topic, payload)
    release = session.scalar(select(ModelRelease).where(ModelRelease.version == str(doc.get("release"))))
    if release is None:
        log.info("drone %s runs %s, which is no release of the registry", drone, doc.get("model"))
        return None
    latest = session.scalar(select(Deployment).where(Deployment.target == drone)
                            .order_by(Deployment.at.desc(), Deployment.id.desc()).limit(1))
    if latest is not None and latest.release_id == release.id and latest.status == doc["state"]:
        latest.report = doc  # the same deployment: the newer figures
        return latest
    d = Deployment(release_id=release.id, target=drone, status=doc["state"], report=doc)
    session.add(d)
    session.flush()
    log.info("drone %s now runs release %s (%s)", drone, release.version, doc["state"])
    return d


def release_figures(session: Session, release: ModelRelease) -> dict:
    """Distance flown, frames, crashes and rollbacks the drones reported for one release."""
    km: dict[str, float] = {}
    frames: dict[str, int] = {}
    crashes: dict[str, int] = {}
    for d in session.scalars(select(Deployment).where(Deployment.release_id == release.id,
                                                      Deployment.report.is_not(None))):
        r = d.report or {}
        km[d.target] = max(km.get(d.target, 0.0), float(r.get("km_on_model") or 0))
        frames[d.target] = max(frames.get(d.target, 0), int(r.get("frames_on_model") or 0))
        crashes[d.target] = max(crashes.get(d.target, 0), int(r.get("crashes") or 0))
    rolled_back = set()
    suffix = f"/{release.version}"
    for d in session.scalars(select(Deployment).where(Deployment.report.is_not(None),
                                                      Deployment.target.in_(list(km) or [""]))):
        for refusal in (d.report or {}).get("refused", []):
            if str(refusal.get("model", "")).endswith(suffix) and "rolled back" in str(refusal.get("reason")):
                rolled_back.add(d.target)
    return {"drones_reporting": len(km), "km": round(sum(km.values()), 3), "frames": sum(frames.values()),
            "crashes": sum(crashes.values()) + len(rolled_back), "rolled_back_on": sorted(rolled_back)}


class StatusWatcher:
    """Subscribes to every drone's status (retained: a restarted cloud gets each drone's latest at
    once) and records them. Not a shared subscription: shared ones get no retained messages."""

    def __init__(self, cfg: MqttConfig, url: str | None = None, fleet: str = "+", name: str | None = None):
        self.cfg, self.filter = cfg, f"pli/{fleet}/+/status"
        self.client = make_client(name or "pli-fleet-status", cfg)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._sessions = sessions(url)
        self.recorded = 0
        self.refused = 0
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("fleet status: the broker refused the connection: %s", reason_code)
            return
        client.subscribe(self.filter, qos=1)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            with self._sessions.begin() as session:
                record(session, message.topic, message.payload)
            self.recorded += 1
        except ReportError as exc:
            self.refused += 1
            log.warning("status refused: %s", exc)
        except Exception as exc:  # the database is down: the retained report comes again on reconnect
            log.error("status on %s not stored (%s: %s)", message.topic, type(exc).__name__, exc)

    def start(self) -> StatusWatcher:
        connect(self.client, self.cfg)
        return self

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
