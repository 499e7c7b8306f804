"""Health (no token: for load balancers) and Prometheus metrics (any token)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from cloud.api.deps import ERRORS, Caller, Message, db, require
from cloud.ingest import DROPPED
from cloud.models import Alert, BrokerCounter, Fault, Job

router = APIRouter(tags=["health"], responses=ERRORS)


@router.get("/health", summary="is the service up, and its database",
            responses={503: {"model": Message, "description": "the database does not answer"}})
def health(session: Session = Depends(db)) -> Response:
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return JSONResponse({"status": "degraded", "database": str(exc).splitlines()[0][:200]}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", summary="Prometheus metrics: requests, latency, alerts, faults, jobs, broker drops")
def metrics(request: Request, session: Session = Depends(db), _: Caller = Depends(require("any"))) -> Response:
    alerts = GaugeMetricFamily("pli_alerts", "alerts stored, by severity and status", labels=["severity", "status"])
    for sev, status, n in session.execute(select(Alert.severity, Alert.status, func.count()).group_by(
            Alert.severity, Alert.status)):
        alerts.add_metric([sev, status], n)
    faults = GaugeMetricFamily("pli_faults", "faults, by status", labels=["status"])
    for status, n in session.execute(select(Fault.status, func.count()).group_by(Fault.status)):
        faults.add_metric([status], n)
    jobs = GaugeMetricFamily("pli_jobs", "jobs, by status", labels=["status"])
    for status, n in session.execute(select(Job.status, func.count()).group_by(Job.status)):
        jobs.add_metric([status], n)
    broker = GaugeMetricFamily("pli_broker", "the broker's $SYS counters as ingest last heard them",
                               labels=["counter"])
    dropped = GaugeMetricFamily("pli_broker_messages_dropped",
                                "messages the broker dropped past max_queued_messages (alarm when it rises; "
                                "the drones resend what was not acknowledged)")
    for row in session.scalars(select(BrokerCounter)):
        broker.add_metric([row.name], row.value)
        if row.name == DROPPED:
            dropped.add_metric([], row.value)
    counts = CollectorRegistry(auto_describe=False)  # this request's database counts, beside the app's own
    counts.register(_Families((alerts, faults, jobs, broker, dropped)))
    return Response(generate_latest(request.app.state.registry) + generate_latest(counts),
                    media_type=CONTENT_TYPE_LATEST)


class _Families:
    def __init__(self, families: tuple) -> None:
        self.families = families

    def collect(self):
        yield from self.families
