"""The 4G link: alerts from the outbox to MQTT (paho-mqtt 2.x, MQTT v5), acknowledgements back.

Topics: `pli/<fleet>/<drone>/alerts` (QoS 1, the alert's JSON form with its thumbnail) and
`pli/<fleet>/<drone>/acks` (the cloud's answers: a JSON list of acknowledged alert ids, or an
object `{"acks": [ids], "refused": [{"id", "reason", "highest_epoch"}]}` when it also refuses
some, e.g. "superseded_epoch" for a drone whose epoch fell behind, or "invalid" with a `detail`
for a payload the cloud's schema refuses, which the outbox keeps as rejected, unsent). A
persistent session (clean_start=False, session expiry > 0) keeps QoS 1 messages across a
reconnect; paho holds them in memory only, so the outbox on disk stays the truth: anything not
acknowledged by the cloud is published again after a restart, and the cloud drops duplicates
by id. Delivery is counted in `on_publish` (PUBACK), never from `publish()`'s return value.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from comms import alert_json
from comms.alert import parse_alert_id
from comms.outbox import Outbox

log = logging.getLogger(__name__)


@dataclass
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    fleet: str = "fleet1"
    username: str | None = None
    password: str | None = None  # from the environment (PLI_MQTT_PASSWORD), never from the repo
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    session_expiry_s: int = 7 * 24 * 3600
    keepalive_s: int = 30


def broker_user(fleet: str, drone: str) -> str:
    """A drone's user name at the broker: `<fleet>/<drone id>`, so the deployment ACL's
    `pattern write pli/%u/alerts` names the fleet as well as the drone (deploy/mosquitto/acl)."""
    return f"{fleet}/{drone}"


def alerts_topic(fleet: str, drone: str) -> str:
    return f"pli/{fleet}/{drone}/alerts"


def acks_topic(fleet: str, drone: str) -> str:
    return f"pli/{fleet}/{drone}/acks"


def status_topic(fleet: str, drone: str) -> str:
    """What the drone runs (edge/status.py), retained: written only by that drone (the ACL)."""
    return f"pli/{fleet}/{drone}/status"


def announce_topic(fleet: str, group: str) -> str:
    """A rollout group's release announcements, retained: read by the group's drones."""
    return f"pli/{fleet}/groups/{group}/release"


def make_client(client_id: str, cfg: MqttConfig, manual_ack: bool = False) -> mqtt.Client:
    """`manual_ack`: the caller sends each PUBACK itself (`client.ack`), after it made the message durable."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=manual_ack)
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls_ca or cfg.tls_cert:
        client.tls_set(ca_certs=cfg.tls_ca, certfile=cfg.tls_cert, keyfile=cfg.tls_key,
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    return client


def connect(client: mqtt.Client, cfg: MqttConfig) -> None:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = cfg.session_expiry_s
    client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=False, properties=props)
    client.loop_start()


def _is_alert_id(text: str) -> bool:
    try:
        parse_alert_id(text)
    except ValueError:
        return False
    return True


def parse_answer(payload: bytes | str) -> tuple[list[str], dict[str, bytes], list[dict]]:
    """(acknowledged ids, their content digests where given, refusals) of a message on the acks
    topic; ValueError if malformed. An acknowledgement is `"<id>"` or `{"id", "digest"}` (hex of
    comms.replay.digest): with the digest, a drone whose numbers were reused (a wiped outbox that
    reconnects to its old broker session) never takes an old alert's acknowledgement for a new one."""
    doc = json.loads(payload)
    if isinstance(doc, list):
        doc = {"acks": doc, "refused": []}
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON list of alert ids or an object with acks and refused")
    acks, refused = doc.get("acks", []), doc.get("refused", [])
    if not isinstance(acks, list):
        raise ValueError("acks must be a list")
    ids, digests = [], {}
    for a in acks:
        if isinstance(a, dict) and isinstance(a.get("id"), str):
            ids.append(a["id"])
            if a.get("digest") is not None:
                digests[a["id"]] = bytes.fromhex(str(a["digest"]))
        elif isinstance(a, str):
            ids.append(a)
        else:
            raise ValueError("an acknowledgement is an alert id or {id, digest}")
    if not isinstance(refused, list) or not all(
            isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("reason"), str)
            and isinstance(r.get("highest_epoch", 0), int | None) for r in refused):
        raise ValueError("refused must be a list of {id, reason, highest_epoch}")
    return ids, digests, refused


def dump_answer(acks: Sequence[str | tuple[str, bytes]], refused: Sequence[dict] = ()) -> bytes:
    """The cloud's answer in the form `parse_answer` reads; an ack given as (id, digest) carries it."""
    items = [a if isinstance(a, str) else {"id": a[0], "digest": a[1].hex()} for a in acks]
    doc: list | dict = items if not refused else {"acks": items, "refused": list(refused)}
    return json.dumps(doc, separators=(",", ":")).encode()


class MqttLink:
    """Publishes due alerts and applies acknowledgements to the outbox. Thread-safe `pump()`."""

    def __init__(self, outbox: Outbox, cfg: MqttConfig, resend_after_s: float = 30.0, status_file: Path | None = None):
        """`status_file`: the runtime's report of what the drone runs, published retained on its
        status topic whenever its content changes (and again after a reconnect)."""
        self.outbox, self.cfg, self.resend_after_s = outbox, cfg, resend_after_s
        self.status_file = Path(status_file) if status_file is not None else None
        self._status_sent: bytes | None = None
        self.drone = outbox.drone_id
        self.client = make_client(f"pli-{cfg.fleet}-{self.drone}", cfg)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail
        self.refused: str | None = None  # the broker's reason when it refused us (bad password, ...)
        self.connect_failures = 0  # TCP or TLS failures (certificate not trusted, port closed)
        # Never held while calling into paho: its network thread holds paho's own lock when it calls
        # back into us, so holding ours around publish() would deadlock (lock-order inversion).
        self._lock = threading.Lock()
        self._early: set[int] = set()  # PUBACKs that came before publish() returned their mid
        self._inflight: dict[int, str] = {}  # mid -> alert id
        self._ids_inflight: dict[str, float] = {}  # alert id -> when published (PUBACK pending)
        self.connected = threading.Event()
        self._acked: list[str] = []  # applied to the outbox by pump() (sqlite on its own thread)
        self._refused: list[dict] = []
        self._digests: dict[str, bytes] = {}
        self.pubacks = 0

    def start(self) -> None:
        connect(self.client, self.cfg)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    # paho's thread: only queue work, the outbox is touched in pump()
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            log.warning("MQTT connect to %s:%d refused: %s", self.cfg.host, self.cfg.port, reason_code)
            return
        self.refused = None
        self._status_sent = None  # a new connection: say it again (the broker may have lost it)
        client.subscribe(acks_topic(self.cfg.fleet, self.drone), qos=1)
        self.connected.set()
        log.info("MQTT connected to %s:%d (session present: %s)", self.cfg.host, self.cfg.port,
                 flags.session_present)

    def _on_connect_fail(self, client, userdata) -> None:
        self.connect_failures += 1
        if self.connect_failures in (1, 10, 100):
            log.warning("MQTT connection to %s:%d failed (%d times; TLS: %s)", self.cfg.host, self.cfg.port,
                        self.connect_failures, bool(self.cfg.tls_ca))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.warning("MQTT disconnected: %s", reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            alert_id = self._inflight.pop(mid, None)
            if alert_id is None:
                self._early.add(mid)
            else:
                self._ids_inflight.pop(alert_id, None)
                self.pubacks += not reason_code.is_failure

    def _on_message(self, client, userdata, message) -> None:
        try:
            ids, digests, refused = parse_answer(message.payload)
        except ValueError as exc:
            log.warning("ignored a malformed acknowledgement on %s: %s", message.topic, exc)
            return
        with self._lock:
            self._acked += ids
            self._digests.update(digests)
            self._refused += refused

    def _publish_status(self) -> None:
        if self.status_file is None:
            return
        try:
            body = self.status_file.read_bytes()
        except FileNotFoundError:
            return
        if body != self._status_sent:
            info = self.client.publish(status_topic(self.cfg.fleet, self.drone), body, qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self._status_sent = body

    def pump(self, limit: int = 50, exclude: Sequence[str] = ()) -> int:
        """Apply acknowledgements, publish what is due; returns how many were published.

        A published alert is marked `sent_mqtt` at once (not at PUBACK), so it leaves the head of
        the queue: the broker session retries it, and the outbox re-sends it only after
        `resend_after_s` without the cloud's acknowledgement. `exclude`: ids in flight on BeiDou.
        """
        with self._lock:
            (acked, self._acked), (refused, self._refused) = (self._acked, []), (self._refused, [])
            digests, self._digests = self._digests, {}
        if acked:
            self.outbox.ack(acked, digests)
            epochs = [parse_alert_id(i)[1] for i in acked if _is_alert_id(i)]
            if epochs:
                self.outbox.note_epoch(max(epochs))
        for r in refused:
            detail = r.get("detail")
            self.outbox.refuse([r["id"]], r["reason"], "mqtt", r.get("highest_epoch"),
                               detail[:500] if isinstance(detail, str) else None)
        if not self.connected.is_set():
            return 0
        self._publish_status()
        if limit <= 0:
            return 0
        published = []
        now = time.monotonic()
        with self._lock:
            waiting = len(self._ids_inflight)
        # Ask for more than `limit`, so alerts whose PUBACK is pending cannot hold up the rest.
        for q in self.outbox.due("mqtt", limit + waiting, self.resend_after_s, exclude=exclude):
            if len(published) == limit:
                break
            with self._lock:
                since = self._ids_inflight.get(q.alert.id)
            if since is not None and now - since < self.resend_after_s:
                continue  # the session may still deliver it; a PUBACK lost with a broker restart does not
            doc = alert_json.to_json(q.alert, q.thumb)
            if q.beidou_refused:  # why it waited for 4G
                doc["beidou_refused"] = q.beidou_refused
            info = self.client.publish(alerts_topic(self.cfg.fleet, self.drone),
                                       json.dumps(doc, separators=(",", ":")).encode(), qos=1)
            with self._lock:
                if info.mid in self._early:  # already acknowledged by the broker
                    self._early.discard(info.mid)
                    self.pubacks += 1
                else:
                    self._inflight[info.mid] = q.alert.id
                    self._ids_inflight[q.alert.id] = now
            published.append(q.alert.id)
        if published:
            self.outbox.mark_sent(published, "mqtt")
        return len(published)
