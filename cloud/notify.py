"""On-call notifications: a new high-severity alert is pushed at once to every configured channel.

Channels: an MQTT topic (`PLI_ONCALL_TOPIC`, default `pli/<fleet>/oncall`, QoS 1, published by the
ingest worker that stored the alert) and outgoing webhooks (`PLI_ONCALL_WEBHOOKS`, comma-separated
URLs), each POSTed by a job on the queue, retried with exponential backoff; every attempt is
recorded (`notification_attempts`). With `PLI_ONCALL_WEBHOOK_SECRET` the body is signed
(`X-PLI-Signature: sha256=<HMAC of the body>`) so the receiver can tell it came from us.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from cloud.alert_doc import api_doc
from cloud.db import session_scope
from cloud.jobs import enqueue, job
from cloud.models import Alert, Notification, NotificationAttempt
from cloud.settings import secret as secret_value
from cloud.settings import settings

log = logging.getLogger(__name__)
ATTEMPTS = 6  # 1 + 5 retries: 1, 2, 4, 8, 16 s apart


def oncall_topic(fleet: str) -> str:
    return settings().oncall_topic or f"pli/{fleet}/oncall"


def webhooks() -> list[str]:
    return [u.strip() for u in settings().oncall_webhooks.split(",") if u.strip()]


def _body(alert: Alert | dict) -> bytes:
    """`alert`: a stored row, or the dict of its columns (the bulk path's)."""
    return json.dumps({"event": "high_severity_alert", "alert": api_doc(alert)}, separators=(",", ":")).encode()


def notify(session: Session, alert: Alert, fleet: str, publish: Callable[[str, bytes], bool]) -> list[int]:
    """Push `alert` on MQTT now (recorded) and queue its webhooks; returns the webhook notification ids,
    to be enqueued once the caller's transaction is committed (`send_webhooks`)."""
    return notify_many(session, [(alert, fleet)], publish)


def notify_many(session: Session, alerts: list[tuple[Alert | dict, str]],
                publish: Callable[[str, bytes], bool] | None) -> list[int]:
    """`notify` for many alerts (rows or dicts of their columns, with their fleets): one insert per
    table. Without `publish` the MQTT notifications stay pending."""
    t, attempts = Notification.__table__, NotificationAttempt.__table__
    notes, tries = [], []
    for alert, fleet in alerts:
        body, topic = _body(alert), oncall_topic(fleet)
        alert_id = alert["id"] if isinstance(alert, dict) else alert.id
        ok = False
        if publish is not None:
            try:
                ok = publish(topic, body)
            except Exception as exc:  # a broker hiccup must not lose the alert: recorded, the row stays pending
                log.warning("on-call MQTT publish of %s failed: %s", alert_id, exc)
            tries.append({"ok": ok, "detail": "published" if ok else "not published"})
        notes.append({"alert_id": alert_id, "channel": "mqtt", "target": topic,
                      "status": "delivered" if ok else "pending"})
    hooks = [{"alert_id": n["alert_id"], "channel": "webhook", "target": url, "status": "pending"}
             for n in notes for url in webhooks()]
    ids = session.execute(insert(t).returning(t.c.id, sort_by_parameter_order=True), notes + hooks).scalars().all()
    if tries:
        now = datetime.now(UTC)
        session.execute(insert(attempts), [{**a, "notification_id": i, "at": now}
                                           for a, i in zip(tries, ids[:len(notes)], strict=True)])
    return list(ids[len(notes):])


def send_webhooks(ids: list[int]) -> None:
    for i in ids:
        enqueue("deliver_webhook", notification_id=i)


@job("deliver_webhook", retries=ATTEMPTS - 1, retry_delay=1, retry_backoff=2)
def deliver_webhook(notification_id: int) -> dict:
    import httpx

    with session_scope() as s:
        note = s.get(Notification, notification_id)
        if note is None or note.status == "delivered":
            return {"skipped": True}
        body, url = _body(s.get(Alert, note.alert_id)), note.target
        tried = len(note.attempts)
    headers = {"Content-Type": "application/json"}
    secret = secret_value(settings().oncall_webhook_secret)
    if secret:
        headers["X-PLI-Signature"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    try:
        r = httpx.post(url, content=body, headers=headers, timeout=5.0)
        ok, detail = r.is_success, f"HTTP {r.status_code}"
    except httpx.HTTPError as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    with session_scope() as s:
        note = s.get(Notification, notification_id)
        s.add(NotificationAttempt(notification_id=notification_id, ok=ok, detail=detail))
        note.status = "delivered" if ok else ("failed" if tried + 1 >= ATTEMPTS else "pending")
    if not ok:
        log.warning("webhook %s for notification %d: %s (attempt %d of %d)", url, notification_id, detail, tried + 1,
                    ATTEMPTS)
        if tried + 1 < ATTEMPTS:
            raise RuntimeError(f"webhook {url}: {detail}")  # huey retries it, with backoff
    return {"delivered": ok, "attempts": tried + 1}
