"""Operators' annotations from Label Studio: recorded once, however they arrive, then applied.

They come twice: by webhook (Label Studio fires it once, with a short timeout, and never
again) and by the reconciliation poll (`reconcile`, `pli annotate reconcile`), which reads each
project's export and catches whatever a missed webhook lost. Both go through `record`, keyed
by Label Studio's annotation id and its `updated_at`: a second copy changes nothing, a newer
edit replaces the older one. Applying is a queued job (`annotations`), never the request: a
review task's verdict sets its alert's status through the same audit trail as the API and the
pages (cloud/alerts.py:change_status), named after the Label Studio user who gave it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotation.client import LabelStudioError
from cloud import alerts, label_studio, learning
from cloud.db import session_scope, upgrade
from cloud.jobs import enqueue, job
from cloud.models import Alert, Annotation

log = logging.getLogger(__name__)
VERDICTS = {"confirm": "confirmed", "false alarm": "false_alarm", "other class": "reclassified"}


def _user(value) -> str | None:
    if isinstance(value, dict):
        return str(value.get("email") or value.get("username") or value.get("id"))
    return None if value is None else str(value)


def record(session: Session, project: int, task: dict, ann: dict, via: str) -> bool:
    """Store one annotation; True when it is new or newer than the stored copy."""
    if ann.get("was_cancelled"):
        return False
    aid = int(ann["id"])
    updated = str(ann.get("updated_at") or ann.get("created_at") or "")
    data = task.get("data") or {}
    row = session.get(Annotation, aid)
    if row is None:
        try:
            with session.begin_nested():  # the webhook and the poll may race for the same one
                session.add(Annotation(
                    id=aid, project=int(project), task=int(task.get("id") or ann.get("task")),
                    image_id=data.get("pli_image_id"), alert_id=data.get("pli_alert_id"),
                    result=ann.get("result") or [], completed_by=_user(ann.get("completed_by")), updated_at=updated,
                    via=via, applied=False))
            return True
        except IntegrityError:
            row = session.get(Annotation, aid)
    if row is not None and updated > row.updated_at:
        row.result, row.updated_at, row.via, row.applied = ann.get("result") or [], updated, via, False
        row.completed_by = _user(ann.get("completed_by")) or row.completed_by
        return True
    return False


def from_webhook(session: Session, payload: dict) -> int:
    """A Label Studio webhook's annotations (one or many); how many were new."""
    anns = payload.get("annotation") or payload.get("annotations") or []
    tasks = payload.get("task") or payload.get("tasks") or []
    anns = anns if isinstance(anns, list) else [anns]
    tasks = tasks if isinstance(tasks, list) else [tasks]
    by_id = {t.get("id"): t for t in tasks if isinstance(t, dict)}
    project = (payload.get("project") or {}).get("id")
    n = 0
    for a in anns:
        task = by_id.get(a.get("task")) or (tasks[0] if len(tasks) == 1 else {"id": a.get("task")})
        n += record(session, int(project or a.get("project")), task, a, "webhook")
    return n


def reconcile(session: Session, exported: dict[int, list[dict]]) -> dict:
    """Projects' exports (project id -> Label Studio JSON export) against what is stored."""
    seen = new = 0
    for project, tasks in exported.items():
        for task in tasks:
            for ann in task.get("annotations") or []:
                seen += 1
                new += record(session, project, task, ann, "poll")
    return {"annotations": seen, "new_or_newer": new}


def _verdict(result: Iterable[dict]) -> tuple[str | None, str | None]:
    verdict = other = None
    for r in result:
        choices = (r.get("value") or {}).get("choices") or []
        if r.get("from_name") == "verdict" and choices:
            verdict = choices[0]
        elif r.get("from_name") == "correct_class" and choices:
            other = choices[0]
    return verdict, other


def apply_pending(session: Session, name_of: Callable[[str], str]) -> dict:
    """Apply what was recorded and not applied yet: review verdicts become alert statuses."""
    done = reviews = 0
    for row in session.scalars(select(Annotation).where(Annotation.applied.is_(False)).order_by(Annotation.id)):
        if row.alert_id:
            verdict, other = _verdict(row.result)
            alert = session.get(Alert, row.alert_id)
            status = VERDICTS.get(verdict or "")
            if alert is None or status is None:
                log.warning("review annotation %s: alert %s, verdict %r: nothing to apply", row.id, row.alert_id,
                            verdict)
            elif status == "reclassified" and not other:
                log.warning("review annotation %s says 'other class' without the class: not applied", row.id)
            else:
                alerts.change_status(session, alert, status, f"{name_of(row.completed_by or '?')} (label-studio)",
                                     f"label-studio project {row.project} task {row.task}", "",
                                     other if status == "reclassified" else None)
                reviews += 1
        row.applied = True
        done += 1
    return {"applied": done, "reviews": reviews}


def label_studio_names() -> Callable[[str], str]:
    """Label Studio user ids to their e-mail (what operators log in with), through the API when
    `PLI_LS_URL` and `PLI_LS_TOKEN` are set."""
    configured = label_studio.configured()

    @lru_cache(maxsize=256)
    def name_of(user: str) -> str:
        if configured and user.isdigit():
            try:
                with label_studio.client() as ls:
                    u = ls.user(int(user))
                return str(u.get("email") or u.get("username") or user)
            except (LabelStudioError, OSError) as exc:
                log.warning("Label Studio user %s: %s", user, exc)
        return f"user {user}" if user.isdigit() else user

    return name_of


def reconcile_projects(projects: list[int]) -> dict:
    """Read the projects' annotations from Label Studio and record what the webhooks missed; a
    job applies what is new."""
    upgrade()
    with label_studio.client() as ls:
        exported = {p: ls.export(p) for p in projects}
    with session_scope() as s:
        counts = reconcile(s, exported)
    if counts["new_or_newer"]:
        counts["job"] = enqueue("annotations")
    return counts


@job("annotations", retries=3, retry_delay=5)
def apply_annotations() -> dict:
    with session_scope() as session:
        done = apply_pending(session, label_studio_names())
    with session_scope() as session:  # what the new annotations call for: a refresh, a full run
        done["queued"] = learning.after_annotations(session)
    return done
