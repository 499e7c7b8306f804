"""The cloud's database tables (SQLAlchemy 2). Schema changes go through Alembic beside them
(`cloud/migrations`, `pli cloud db upgrade`); the same models run on SQLite and PostgreSQL.

Alerts keep the drone's id (`<drone>-<epoch>-<seq>`) as their key, so every copy of one alert
(BeiDou through the ground station, MQTT) lands on one row; a copy that disagrees beyond the BeiDou
form's quantization is kept apart in `alert_copies` and the alert is flagged, never merged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ALERT_STATUSES = ("new", "confirmed", "false_alarm", "reclassified", "repaired")
FAULT_STATUSES = ("open", "repaired", "repair_confirmed", "false_alarm")
JOB_STATUSES = ("queued", "running", "done", "failed")
ROLES = ("operator", "fleet", "admin")


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite keeps no zone: stored as UTC, read back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value} stored: give it a time zone")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict: JSON, list: JSON}


def _now() -> datetime:
    return datetime.now(UTC)


class Drone(Base):
    __tablename__ = "drones"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    fleet: Mapped[str] = mapped_column(String(64), default="fleet1")
    highest_epoch: Mapped[int] = mapped_column(Integer, default=0)
    model_version: Mapped[str | None] = mapped_column(String(128))  # of its latest alert
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Line(Base):
    __tablename__ = "lines"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), default="")


class Tower(Base):
    __tablename__ = "towers"
    __table_args__ = (UniqueConstraint("line_id", "tower_id"), Index("towers_position", "lat", "lon"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    line_id: Mapped[str] = mapped_column(ForeignKey("lines.id"))
    tower_id: Mapped[str] = mapped_column(String(32))
    order: Mapped[int] = mapped_column(Integer)  # position along the line
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)


class Flight(Base):
    __tablename__ = "flights"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    drone_id: Mapped[str] = mapped_column(ForeignKey("drones.id"))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    track: Mapped[list | None] = mapped_column(JSON)  # [[lat, lon], ...] where the camera looked
    passes_recorded: Mapped[bool] = mapped_column(Boolean, default=False)


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("flight_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flight_id: Mapped[str | None] = mapped_column(ForeignKey("flights.id"))
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str | None] = mapped_column(String(64))
    key: Mapped[str | None] = mapped_column(String(512))  # in the object store
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Fault(Base):
    """One physical fault, seen (or passed clean) across flights."""

    __tablename__ = "faults"
    __table_args__ = (Index("faults_place", "fault_class", "lat", "lon"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fault_class: Mapped[str] = mapped_column(String(64))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    line_id: Mapped[str | None] = mapped_column(String(64))
    tower_id: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(24), default="open")
    severity: Mapped[str] = mapped_column(String(16))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sightings: Mapped[int] = mapped_column(Integer, default=0)
    clean_passes: Mapped[int] = mapped_column(Integer, default=0)
    observations: Mapped[list[FaultObservation]] = relationship(back_populates="fault", order_by="FaultObservation.id")


class FaultObservation(Base):
    """A flight over a fault: it saw it (an alert) or passed clean."""

    __tablename__ = "fault_observations"
    __table_args__ = (UniqueConstraint("fault_id", "flight_id", "alert_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fault_id: Mapped[int] = mapped_column(ForeignKey("faults.id"))
    flight_id: Mapped[str | None] = mapped_column(String(64))
    alert_id: Mapped[str | None] = mapped_column(ForeignKey("alerts.id"))
    seen: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    fault: Mapped[Fault] = relationship(back_populates="observations")


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (Index("alerts_time_place", "time", "lat", "lon"), Index("alerts_place", "lat", "lon"),
                      Index("alerts_flight", "flight_id"), Index("alerts_fault", "fault_id"))
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    drone_id: Mapped[str] = mapped_column(ForeignKey("drones.id"))
    epoch: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger)  # up to 2^32 - 1 on the wire
    flight_id: Mapped[str | None] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    alt: Mapped[float] = mapped_column(Float)
    fault_class: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    severity: Mapped[str] = mapped_column(String(16))
    line_id: Mapped[str | None] = mapped_column(String(64))
    tower_id: Mapped[str | None] = mapped_column(String(32))  # the drone's, else the nearest in the register
    span: Mapped[str | None] = mapped_column(String(80))  # "T03-T04" along its line
    position_source: Mapped[str] = mapped_column(String(16))
    position_error_m: Mapped[float | None] = mapped_column(Float)  # the drone's estimate (multi-view)
    class_list_version: Mapped[int | None] = mapped_column(Integer)
    model_version: Mapped[str | None] = mapped_column(String(128))
    source_frame: Mapped[str | None] = mapped_column(String(255))
    frame_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    box: Mapped[list | None] = mapped_column(JSON)
    flags: Mapped[list] = mapped_column(JSON, default=list)
    beidou_refused: Mapped[str | None] = mapped_column(String(255))  # why the drone kept it for 4G
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)  # loaded when asked for
    via: Mapped[str] = mapped_column(String(16))  # mqtt, beidou, or both
    precise: Mapped[bool] = mapped_column(Boolean)  # full-precision fields (an MQTT copy arrived)
    status: Mapped[str] = mapped_column(String(16), default="new")
    conflict: Mapped[bool] = mapped_column(Boolean, default=False)  # a copy disagreed: see alert_copies
    fault_id: Mapped[int | None] = mapped_column(ForeignKey("faults.id"))
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class AlertCopy(Base):
    """A copy of an alert that disagreed with the stored one beyond quantization: kept, flagged."""

    __tablename__ = "alert_copies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"))
    doc: Mapped[dict] = mapped_column(JSON)
    via: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class AlertEvent(Base):
    """The audit trail: who changed an alert's status, when and from where."""

    __tablename__ = "alert_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"), index=True)
    field: Mapped[str] = mapped_column(String(32))
    old: Mapped[str | None] = mapped_column(String(64))
    new: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(255))  # client address and agent
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class Campaign(Base):
    """A body of data with its own frozen test set (CPLID, the IDD photos, a fleet's flights)."""

    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    class_list_version: Mapped[int | None] = mapped_column(Integer)
    test_set: Mapped[list] = mapped_column(JSON, default=list)  # image names, frozen
    frozen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    data: Mapped[str | None] = mapped_column(String(1024))  # its data.yaml (cloud/campaigns.py)


class PoolPhoto(Base):
    """A campaign's unlabelled photo gathered by `pli data crawl --campaign`: where it came from,
    under which licence, its hashes (for deduplicating later crawls) and what the model saw in it.
    Photos the model found nothing in are kept `aside`: listed, never offered for labelling."""

    __tablename__ = "pool_photos"
    __table_args__ = (UniqueConstraint("campaign_id", "sha256", name="uq_pool_photo"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    phash: Mapped[str] = mapped_column(String(16))
    source_url: Mapped[str] = mapped_column(String(2048))
    page_url: Mapped[str] = mapped_column(String(2048), default="")
    licence: Mapped[str] = mapped_column(String(255), default="")
    licence_family: Mapped[str] = mapped_column(String(32))
    author: Mapped[str] = mapped_column(String(512), default="")
    title: Mapped[str] = mapped_column(String(512), default="")
    relevance: Mapped[dict | None] = mapped_column(JSON)  # the crawl's model: detections, max fault confidence
    max_fault_confidence: Mapped[float | None] = mapped_column(Float)
    aside: Mapped[bool] = mapped_column(Boolean, default=False)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class ModelRelease(Base):
    __tablename__ = "model_releases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    class_list_version: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    card: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class Deployment(Base):
    __tablename__ = "deployments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("model_releases.id"))
    target: Mapped[str] = mapped_column(String(64))  # a drone id or a group (canary, fleet)
    # a group: announced, rolled_back_to; a drone (from its status reports): trial, good, given
    status: Mapped[str] = mapped_column(String(24), default="pending")
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    report: Mapped[dict | None] = mapped_column(JSON)  # a drone's latest report on this release and state

    __table_args__ = (Index("deployments_target_at", "target", "at"),)


class Annotation(Base):
    """An operator's annotation in Label Studio (its id there), however it reached us."""

    __tablename__ = "annotations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    project: Mapped[int] = mapped_column(Integer)
    task: Mapped[int] = mapped_column(Integer)
    image_id: Mapped[int | None] = mapped_column(Integer)  # the cloud's photo, when the cloud made the task
    alert_id: Mapped[str | None] = mapped_column(String(64))  # a review task's alert
    result: Mapped[list] = mapped_column(JSON)
    completed_by: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[str] = mapped_column(String(40))  # Label Studio's own stamp, compared as given
    via: Mapped[str] = mapped_column(String(16))  # webhook | poll
    applied: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)

    __table_args__ = (Index("annotations_task", "project", "task"),)


class LearningRun(Base):
    """One run of the learning loop (cloud/learning.py): what trained it, how it scored, the gates' word."""

    __tablename__ = "learning_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(64))  # on demand | annotations | schedule
    status: Mapped[str] = mapped_column(String(16))  # running | released | refused | failed
    parent: Mapped[str | None] = mapped_column(String(64))  # the release it started from
    recipe: Mapped[dict] = mapped_column(JSON, default=dict)
    data: Mapped[dict | None] = mapped_column(JSON)  # which photos: new, pseudo-label version, replay
    matrix: Mapped[dict | None] = mapped_column(JSON)  # mAP50 per campaign, candidate and parent
    curve: Mapped[dict | None] = mapped_column(JSON)  # the training run's columns per epoch
    decision: Mapped[dict | None] = mapped_column(JSON)  # passed, reasons
    release: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BrokerCounter(Base):
    """The broker's own counters ($SYS/broker/...), as the ingest workers last heard them: the API's
    /metrics exports them, so a broker that drops messages is seen where everything else is."""

    __tablename__ = "broker_counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)  # e.g. publish/messages/dropped
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class Job(Base):
    """A queued job (huey runs it): recorded here so the API can show it."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # huey's task id
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    args: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the token, never the token
    fleet: Mapped[str | None] = mapped_column(String(64))  # a fleet token's fleet (None: operator, admin)
    drone: Mapped[str | None] = mapped_column(String(32))  # a drone token's drone (None: the whole fleet)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Notification(Base):
    """A high-severity alert pushed to one on-call channel; every attempt recorded."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # mqtt or webhook
    target: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, delivered, failed
    attempts: Mapped[list[NotificationAttempt]] = relationship(order_by="NotificationAttempt.id")


class NotificationAttempt(Base):
    __tablename__ = "notification_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"), index=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class Upload(Base):
    """One file of a flight's upload manifest (photo, telemetry, the manifest itself): expected
    with its size and sha256, then stored in the object store once its bytes check out."""

    __tablename__ = "uploads"
    __table_args__ = (UniqueConstraint("flight_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flight_id: Mapped[str] = mapped_column(ForeignKey("flights.id"))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # photo, telemetry, manifest, other
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, stored
    key: Mapped[str | None] = mapped_column(String(512))  # in the object store, once stored
    stored_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Operator(Base):
    """A person who logs in to the pages (machines use API tokens)."""

    __tablename__ = "operators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # scrypt, salted (cloud/operators.py)
    role: Mapped[str] = mapped_column(String(16), default="operator")  # operator or admin
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class WebSession(Base):
    """A logged-in operator's session: the cookie holds a random token, the database its hash."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    csrf: Mapped[str] = mapped_column(String(64))  # sent back by the pages' scripts on every change
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
