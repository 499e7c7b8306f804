"""A flight's report: what the page shows and what the maintenance crew prints (PDF, reportlab).

`flight_report` gathers the flight, its track and every alert with its fault, tower, crop, photo
and audit trail; `pdf` lays that out per tower (a table each, with the crops and positions), for
a crew that climbs towers, not screens.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from cloud.models import Alert, AlertEvent, Fault, Flight


@dataclass
class ReportAlert:
    id: str
    fault_class: str
    confidence: float
    severity: str
    status: str
    lat: float
    lon: float
    alt: float
    time: datetime
    tower: str  # the drone's or the register's, "-" when none
    line: str | None
    span: str | None
    model_version: str | None
    source_frame: str | None
    has_photo: bool
    crop: bytes | None
    fault_id: int | None
    fault_sightings: int = 0
    fault_clean_passes: int = 0
    fault_first_seen: datetime | None = None
    history: list[dict] = field(default_factory=list)

    def json(self) -> dict:
        return {"id": self.id, "class": self.fault_class, "confidence": round(self.confidence, 3),
                "severity": self.severity, "status": self.status, "lat": self.lat, "lon": self.lon,
                "alt": round(self.alt, 1), "time": self.time.isoformat(), "tower": self.tower, "line": self.line,
                "span": self.span, "model_version": self.model_version, "source_frame": self.source_frame,
                "photo": self.has_photo, "crop": self.crop is not None, "fault_id": self.fault_id,
                "fault": {"sightings": self.fault_sightings, "clean_passes": self.fault_clean_passes,
                          "first_seen": self.fault_first_seen.isoformat() if self.fault_first_seen else None},
                "history": self.history}


@dataclass
class Report:
    flight: Flight
    alerts: list[ReportAlert]
    track: list[list[float]]

    def by_tower(self) -> dict[str, list[ReportAlert]]:
        groups: dict[str, list[ReportAlert]] = defaultdict(list)
        for a in self.alerts:
            groups[a.tower].append(a)
        return dict(sorted(groups.items(), key=lambda kv: (kv[0] == "-", kv[0])))


def flight_report(session: Session, flight_id: str) -> Report | None:
    flight = session.get(Flight, flight_id)
    if flight is None:
        return None
    rows = list(session.scalars(select(Alert).where(Alert.flight_id == flight_id).options(undefer(Alert.thumbnail))
                                .order_by(Alert.time, Alert.id)))
    faults = {f.id: f for f in session.scalars(select(Fault).where(Fault.id.in_({a.fault_id for a in rows
                                                                               if a.fault_id})))}
    events: dict[str, list[dict]] = defaultdict(list)
    for e in session.scalars(select(AlertEvent).where(AlertEvent.alert_id.in_([a.id for a in rows]))
                             .order_by(AlertEvent.id)):
        events[e.alert_id].append({"field": e.field, "old": e.old, "new": e.new, "actor": e.actor,
                                   "at": e.at.isoformat(), "note": e.note})
    alerts = []
    for a in rows:
        f = faults.get(a.fault_id)
        alerts.append(ReportAlert(a.id, a.fault_class, a.confidence, a.severity, a.status, a.lat, a.lon, a.alt, a.time,
                                  a.tower_id or "-", a.line_id, a.span, a.model_version, a.source_frame,
                                  a.image_id is not None, a.thumbnail, a.fault_id,
                                  f.sightings if f else 0, f.clean_passes if f else 0, f.first_seen_at if f else None,
                                  events[a.id]))
    return Report(flight, alerts, list(flight.track or []))


def pdf(report: Report) -> bytes:
    """The printable report: a title block, then per tower a table of its faults with crops."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image as RLImage
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    buf = io.BytesIO()
    f = report.flight
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=15 * mm, title=f"Flight {f.id}", author="pli cloud")
    span = " to ".join(t.strftime("%Y-%m-%d %H:%M UTC") for t in (f.started_at, f.ended_at) if t) or "-"
    story = [Paragraph(f"Inspection flight {f.id}", styles["Title"]),
             Paragraph(f"Drone {f.drone_id} &middot; {span} &middot; {len(report.alerts)} alerts", styles["Normal"]),
             Spacer(1, 6 * mm)]
    for tower, alerts in report.by_tower().items():
        line = next((a.line for a in alerts if a.line), None)
        title = f"Tower {tower}" + (f" (line {line})" if line else "") if tower != "-" else "No tower in the register"
        story.append(Paragraph(title, styles["Heading2"]))
        rows = [["Crop", "Fault", "Position", "Status"]]
        for a in alerts:
            crop = ""
            if a.crop:
                try:
                    crop = RLImage(io.BytesIO(a.crop), width=28 * mm, height=28 * mm, kind="proportional")
                except Exception:  # a crop reportlab cannot read: the row stays, without it
                    crop = "(unreadable)"
            fault = Paragraph(f"<b>{a.fault_class}</b> ({a.severity})<br/>confidence {a.confidence:.2f}<br/>"
                              f"<font size=7>{a.id}</font><br/><font size=7>model {a.model_version or '-'}</font>",
                              styles["Normal"])
            where = Paragraph(f"{a.lat:.6f}, {a.lon:.6f}<br/>alt {a.alt:.0f} m<br/>span {a.span or '-'}<br/>"
                              f"{a.time.strftime('%H:%M:%S')} UTC", styles["Normal"])
            rows.append([crop, fault, where, a.status.replace("_", " ")])
        table = Table(rows, colWidths=[32 * mm, 62 * mm, 52 * mm, 30 * mm], repeatRows=1)
        table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                                   ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                                   ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        story += [table, Spacer(1, 5 * mm)]
    if not report.alerts:
        story.append(Paragraph("No faults were alerted on this flight.", styles["Normal"]))
    doc.build(story)
    return buf.getvalue()
