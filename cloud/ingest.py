"""`pli cloud ingest`: alerts from the broker into the database, acknowledged only once committed.

Several workers split a fleet through a shared subscription (`$share/<group>/pli/+/+/alerts`).
Messages are taken in batches, one transaction each; only after the commit does the worker send
the broker its PUBACKs (paho's `manual_ack`) and the drones their answers (acknowledgements with
the content digest, refusals), so a worker killed mid-batch loses nothing: the broker hands the
unacknowledged messages out again, and the database drops the duplicates by id. While the
database is down nothing is acknowledged: the batch is retried until it commits.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from cloud.alerts import IngestError, Outcome, record, record_batch
from cloud.db import sessions
from cloud.models import Alert, BrokerCounter
from cloud.notify import notify, send_webhooks
from comms.mqtt_link import MqttConfig, acks_topic, connect, dump_answer, make_client

log = logging.getLogger(__name__)
SYS = "$SYS/broker/"
# The broker's counters every worker follows (mosquitto publishes them each `sys_interval`): drops
# past max_queued_messages first; the stored backlog and the clients beside it for the reader.
SYS_COUNTERS = ("publish/messages/dropped", "store/messages/count", "clients/connected")
DROPPED = SYS_COUNTERS[0]


@dataclass
class IngestStats:
    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    conflicts: int = 0
    rejected: int = 0
    db_retries: int = 0
    reasons: list[str] = field(default_factory=list)


def _parse(payload: bytes) -> dict | bytes:
    """The message's JSON document, parsed once for the batch; the raw bytes when it is not one
    (then `record` says what is wrong)."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return payload
    return doc if isinstance(doc, dict) else payload


class IngestWorker:
    def __init__(self, cfg: MqttConfig, url: str | None = None, group: str = "ingest", fleet: str = "+",
                 name: str | None = None, batch: int = 500, linger_s: float = 0.05, shared: bool = True):
        """`name`: the MQTT client id; give each worker a stable one so its session (and the
        messages queued for it) survives a restart."""
        self.cfg, self.url, self.batch, self.linger_s = cfg, url, batch, linger_s
        self.filter = (f"$share/{group}/" if shared else "") + f"pli/{fleet}/+/alerts"
        self.client = make_client(name or f"pli-ingest-{uuid.uuid4().hex[:8]}", cfg, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.stats = IngestStats()
        self._sessions = sessions(url, immediate=True)
        self.broker: dict[str, int] = {}  # the broker's $SYS counters, as last heard
        self._broker_dirty: set[str] = set()
        self._broker_lock = threading.Lock()

    def _on_message(self, client, userdata, m: mqtt.MQTTMessage) -> None:
        if m.topic.startswith(SYS):
            self._on_counter(m.topic[len(SYS):], m.payload)
        else:
            self._inbox.put(m)

    def _on_counter(self, name: str, payload: bytes) -> None:
        """A $SYS counter: kept for /metrics; a rise in dropped messages is an error in the log
        (the broker says it once, to its own log; the cloud must say it where operators look)."""
        try:
            value = int(payload.split()[0])
        except (ValueError, IndexError):
            return
        with self._broker_lock:
            before = self.broker.get(name)
            self.broker[name] = value
            self._broker_dirty.add(name)
        if name == DROPPED and value > (before or 0):
            log.error("the broker dropped %d messages%s (%d in all since it started): its queue for a slow or "
                      "absent subscriber is full (max_queued_messages); the drones resend what was not "
                      "acknowledged, so alerts arrive late, not never", value - (before or 0),
                      "" if before is not None else " before this worker connected", value)

    def save_counters(self) -> None:
        """Write the counters heard since the last call (the API's /metrics reads them)."""

        with self._broker_lock:
            dirty, self._broker_dirty = {k: self.broker[k] for k in self._broker_dirty}, set()
        if not dirty:
            return
        try:
            with self._sessions() as s:
                for name, value in dirty.items():
                    row = s.get(BrokerCounter, name) or BrokerCounter(name=name)
                    row.value, row.updated_at = value, datetime.now(UTC)
                    s.merge(row)
                s.commit()
        except SQLAlchemyError as exc:
            log.warning("ingest: the broker's counters were not saved (%s); next time",
                        str(exc).splitlines()[0][:160])
            with self._broker_lock:
                self._broker_dirty |= set(dirty)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("ingest: the broker refused the connection: %s", reason_code)
            return
        client.subscribe([(self.filter, 1), *((SYS + c, 0) for c in SYS_COUNTERS)])
        log.info("ingest subscribed to %s (and the broker's counters)", self.filter)

    def start(self) -> IngestWorker:
        connect(self.client, self.cfg)
        return self

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.drain_once(timeout=0.2, stop=stop)
            self.save_counters()

    def drain_once(self, timeout: float = 0.2, stop: threading.Event | None = None) -> int:
        """Take one batch (waiting up to `timeout` for its first message), store, acknowledge."""
        try:
            first = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return 0
        batch = [first]
        deadline = time.monotonic() + self.linger_s
        while len(batch) < self.batch:
            try:
                batch.append(self._inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        outcomes = self._store(batch, stop)
        if outcomes is None:
            return 0  # stopping with the database down: unacknowledged, the broker keeps them
        for m in batch:
            self.client.ack(m.mid, m.qos)  # after the commit: the broker may forget them now
        self._answer(outcomes)
        return len(batch)

    def _store(self, batch: list[mqtt.MQTTMessage], stop: threading.Event | None) -> list[Outcome] | None:
        delay = 0.5
        while True:
            try:
                return self._transaction(batch)
            except (OperationalError, SQLAlchemyError) as exc:
                if isinstance(exc, OperationalError) or "connect" in str(exc).lower():
                    self.stats.db_retries += 1
                    log.error("database error (%s): %d alerts wait, nothing acknowledged; retrying in %.1f s",
                              str(getattr(exc, "orig", None) or exc).splitlines()[0][:160], len(batch), delay)
                    if stop is not None and stop.wait(delay):
                        return None
                    if stop is None:
                        time.sleep(delay)
                    delay = min(10.0, delay * 2)
                    continue
                raise

    def _transaction(self, batch: list[mqtt.MQTTMessage]) -> list[Outcome]:
        out: list[Outcome] = []
        stats = IngestStats()
        messages = [(m.topic, _parse(m.payload)) for m in batch]
        with self._sessions() as session, session.begin():
            try:
                with session.begin_nested():
                    results, webhooks = record_batch(session, messages, self._publish)
            except OperationalError:
                raise  # the database is away: the whole batch waits (`_store`)
            except Exception as exc:  # another worker stored some of these rows first, or a bug: one at a time
                if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                    raise
                if not isinstance(exc, IntegrityError):
                    log.exception("ingest: the batch path failed; storing these %d one at a time", len(messages))
                session.info.pop("drones_locked", None)
                session.info.pop("absent_alerts", None)
                results, webhooks = [None] * len(messages), []
            for (topic, doc), result in zip(messages, results, strict=True):
                stats.messages += 1
                if result is None:
                    try:
                        result = self._record(session, topic, doc)
                    except IngestError as exc:
                        result = exc
                    else:
                        if result.new_high_severity:
                            webhooks += notify(session, session.get(Alert, result.alert_id), result.fleet,
                                               self._publish)
                if isinstance(result, IngestError):
                    stats.rejected += 1
                    stats.reasons.append(str(result))
                    log.warning("ingest: %s%s", result, " (the drone is told)" if result.refusal else "")
                    if result.outcome() is not None:
                        out.append(result.outcome())
                    continue
                out.append(result)
                stats.stored += result.verdict == "new"
                stats.duplicates += result.verdict == "duplicate"
                stats.conflicts += result.verdict == "conflict"
                stats.refused += result.refusal is not None
        for k in ("messages", "stored", "duplicates", "refused", "conflicts", "rejected"):
            setattr(self.stats, k, getattr(self.stats, k) + getattr(stats, k))
        self.stats.reasons += stats.reasons
        send_webhooks(webhooks)  # committed: the jobs may run now
        return out

    def _record(self, session, topic: str, doc: dict | bytes) -> Outcome:
        """One message in its own savepoint, so one bad alert never takes its batch down. Two
        workers may create the same drone, flight or alert row at once (the BeiDou and the 4G
        copy on two workers): the loser's insert fails on the key, and it tries again, finding
        the row the other committed."""
        for attempt in range(3):
            try:
                with session.begin_nested():
                    return record(session, topic, doc)
            except IntegrityError as exc:
                session.info.pop("drones_locked", None)  # rolled back with the savepoint
                session.info.pop("absent_alerts", None)
                if attempt == 2:
                    raise IngestError(f"message on {topic} keeps conflicting with stored rows: "
                                      f"{str(exc.orig).splitlines()[0][:160]}") from None
            except (OperationalError, IngestError):
                raise
            except Exception as exc:  # a bug must not wedge the queue: refuse this message, say why
                raise IngestError(f"message on {topic} could not be stored ({type(exc).__name__}: {exc})") from None
        raise AssertionError("unreachable")

    def _publish(self, topic: str, payload: bytes) -> bool:
        return self.client.publish(topic, payload, qos=1).rc == mqtt.MQTT_ERR_SUCCESS

    def _answer(self, outcomes: list[Outcome]) -> None:
        per_drone: dict[tuple[str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
        for o in outcomes:
            acks, refused = per_drone[(o.fleet, o.drone_id)]
            if o.ack is not None:
                acks.append(o.ack)
            if o.refusal is not None:
                refused.append(o.refusal)
        for (fleet, drone), (acks, refused) in per_drone.items():
            self.client.publish(acks_topic(fleet, drone), dump_answer(acks, refused), qos=1)
