"""A flight's report: what the page shows and what the maintenance crew prints (PDF, reportlab).

`flight_report` gathers the flight, its track, the towers around it and every alert with its
fault, tower, crop (cut from the uploaded photo with the box drawn, else the drone's thumbnail)
and audit trail. `pdf` is for a crew that climbs towers, not screens: a first page with the line
map and the faults to visit in order of severity, then per tower its coordinates and each fault
with its crop, class, severity, status and the class list's recommended action. False alarms are
left out (a crew could climb for one) and listed in an appendix for the record.
"""

from __future__ import annotations

import io
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from xml.sax.saxutils import escape

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from cloud.models import Alert, AlertEvent, Fault, Flight, Image, Tower
from cloud.photos import boxed_crop
from cloud.status_rules import OPEN, classes
from cloud.storage import store

log = logging.getLogger(__name__)
RANK = {"high": 0, "medium": 1, "low": 2}


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
    box: list[float] | None = None
    boxed: bytes | None = None  # a crop of the photo around the box, the box drawn (JPEG)

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
    towers: list[tuple[str, str, int, float, float]] = field(default_factory=list)  # line, tower, order, lat, lon

    def by_tower(self, alerts: list[ReportAlert] | None = None) -> dict[str, list[ReportAlert]]:
        groups: dict[str, list[ReportAlert]] = defaultdict(list)
        for a in self.alerts if alerts is None else alerts:
            groups[a.tower].append(a)
        return dict(sorted(groups.items(), key=lambda kv: (kv[0] == "-", kv[0])))

    @property
    def for_the_crew(self) -> list[ReportAlert]:
        """Every alert but the false alarms, most severe first, then along the line."""
        kept = [a for a in self.alerts if a.status != "false_alarm"]
        return sorted(kept, key=lambda a: (a.status not in OPEN, RANK.get(a.severity, 3), a.line or "~",
                                           self.tower_order(a), a.time))

    @property
    def false_alarms(self) -> list[ReportAlert]:
        return [a for a in self.alerts if a.status == "false_alarm"]

    def tower_order(self, a: ReportAlert) -> int:
        for line, tower, order, _, _ in self.towers:
            if tower == a.tower and (a.line is None or line == a.line):
                return order
        return 1 << 30

    def tower_at(self, a: ReportAlert) -> tuple[float, float] | None:
        for line, tower, _, lat, lon in self.towers:
            if tower == a.tower and (a.line is None or line == a.line):
                return lat, lon
        return None


def flight_report(session: Session, flight_id: str, photos: bool = False) -> Report | None:
    """The flight's report; `photos`: also cut each alert's crop from its uploaded photo (the PDF)."""
    flight = session.get(Flight, flight_id)
    if flight is None:
        return None
    rows = list(session.scalars(select(Alert).where(Alert.flight_id == flight_id).options(undefer(Alert.thumbnail))
                                .order_by(Alert.time, Alert.id)))
    faults = {f.id: f for f in session.scalars(select(Fault).where(Fault.id.in_({a.fault_id for a in rows
                                                                               if a.fault_id})))}
    images = {i.id: i for i in session.scalars(select(Image).where(Image.id.in_({a.image_id for a in rows
                                                                                if a.image_id})))}
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
                                  events[a.id], a.box))
        image = images.get(a.image_id)
        if photos and image is not None and image.key and a.box and len(a.box) == 4:
            try:
                alerts[-1].boxed = boxed_crop(store().read(image.key), a.box)
            except Exception as exc:  # a photo the store cannot give: the drone's crop stands in
                log.warning("alert %s: photo %s not read for the report (%s)", a.id, image.key, exc)
    lines = {a.line_id for a in rows if a.line_id}
    places = [(a.lat, a.lon) for a in rows] + [(p[0], p[1]) for p in flight.track or []]
    towers = []
    if places:
        lat0, lat1 = min(p[0] for p in places) - 0.01, max(p[0] for p in places) + 0.01
        lon0, lon1 = min(p[1] for p in places) - 0.01, max(p[1] for p in places) + 0.01
        towers = [(t.line_id, t.tower_id, t.order, t.lat, t.lon) for t in session.scalars(
            select(Tower).where(Tower.lat.between(lat0, lat1), Tower.lon.between(lon0, lon1))
            .order_by(Tower.line_id, Tower.order)) if not lines or t.line_id in lines]
    return Report(flight, alerts, list(flight.track or []), towers)


SEVERITY_RGB = {"high": (0.86, 0.15, 0.15), "medium": (0.92, 0.35, 0.05), "low": (0.79, 0.54, 0.02)}


def line_map(report: Report, numbers: dict[str, int], width: float, height: float):
    """The first page's map (a reportlab Drawing): spans, towers, track and the numbered faults
    to visit, in a local metric projection, with a scale bar. No basemap: a crew's printout."""
    from reportlab.graphics.shapes import Circle, Drawing, Line, PolyLine, Rect, String
    from reportlab.lib import colors

    d = Drawing(width, height)
    d.add(Rect(0, 0, width, height, strokeColor=colors.grey, fillColor=colors.Color(0.96, 0.97, 0.98)))
    pts = [(t[3], t[4]) for t in report.towers] + [(p[0], p[1]) for p in report.track] + \
          [(a.lat, a.lon) for a in report.alerts]
    if not pts:
        d.add(String(10, height / 2, "no position to draw", fontSize=9))
        return d
    lat_c = sum(p[0] for p in pts) / len(pts)
    kx = 111_320.0 * math.cos(math.radians(lat_c))
    xs = [p[1] * kx for p in pts]
    ys = [p[0] * 111_320.0 for p in pts]
    span_m = max(max(xs) - min(xs), max(ys) - min(ys), 50.0)
    pad = 18
    scale = min((width - 2 * pad) / max(max(xs) - min(xs), 1.0), (height - 2 * pad) / max(max(ys) - min(ys), 1.0),
                (min(width, height) - 2 * pad) / span_m)
    x0, y0 = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2

    def at(lat: float, lon: float) -> tuple[float, float]:
        return width / 2 + (lon * kx - x0) * scale, height / 2 + (lat * 111_320.0 - y0) * scale

    by_line: dict[str, list] = defaultdict(list)
    for t in report.towers:
        by_line[t[0]].append(t)
    for ts in by_line.values():
        for a, b in pairwise(ts):
            if b[2] == a[2] + 1:
                (ax, ay), (bx, by) = at(a[3], a[4]), at(b[3], b[4])
                d.add(Line(ax, ay, bx, by, strokeColor=colors.Color(0.2, 0.25, 0.33), strokeDashArray=[3, 2]))
    if len(report.track) > 1:
        flat = [c for p in report.track for c in at(p[0], p[1])]
        d.add(PolyLine(flat, strokeColor=colors.Color(0.15, 0.39, 0.92), strokeWidth=1.2))
    for t in report.towers:
        x, y = at(t[3], t[4])
        d.add(Rect(x - 3, y - 3, 6, 6, fillColor=colors.Color(0.2, 0.25, 0.33), strokeColor=None))
        d.add(String(x + 5, y + 3, t[1], fontSize=7))
    placed: list[tuple[float, float]] = []
    for a in report.for_the_crew:
        x, y = at(a.lat, a.lon)
        near = sum(1 for px, py in placed if abs(px - x) < 9 and abs(py - y) < 9)
        placed.append((x, y))
        if near:  # share a place: spread on a small circle, as the page's map does
            x, y = x + 10 * math.cos(near * 1.3), y + 10 * math.sin(near * 1.3)
        d.add(Circle(x, y, 6, fillColor=colors.Color(*SEVERITY_RGB.get(a.severity, (0.4, 0.4, 0.4))),
                     strokeColor=colors.white))
        d.add(String(x, y - 2.5, str(numbers[a.id]), fontSize=7, fillColor=colors.white, textAnchor="middle"))
    bar = 10 ** math.floor(math.log10(span_m / 3))
    d.add(Line(pad, 8, pad + bar * scale, 8, strokeWidth=2))
    d.add(String(pad + bar * scale + 4, 5, f"{bar:.0f} m" if bar >= 1 else f"{bar:.1f} m", fontSize=7))
    d.add(String(width - 4, height - 10, "N", fontSize=8, textAnchor="end"))
    return d


def pdf(report: Report) -> bytes:
    """The crew's printable report (see the module's docstring for its layout)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image as RLImage
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    small = styles["Normal"].clone("small", fontSize=8, leading=10)
    buf = io.BytesIO()
    f = report.flight
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=15 * mm, title=f"Flight {f.id}", author="pli cloud")
    rules = classes()

    def action(cls: str) -> str:
        return rules.rule(cls).action if cls in rules.names and rules.rule(cls).action else "inspect on site"

    def grid(rows, widths):
        t = Table(rows, colWidths=widths, repeatRows=1)
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return t

    crew = report.for_the_crew
    numbers = {a.id: i + 1 for i, a in enumerate(crew)}
    visit = [a for a in crew if a.status in OPEN]
    span = " to ".join(t.strftime("%Y-%m-%d %H:%M UTC") for t in (f.started_at, f.ended_at) if t) or "-"
    counts = {s: sum(a.severity == s for a in visit) for s in ("high", "medium", "low")}
    story = [Paragraph(f"Inspection flight {escape(f.id)}", styles["Title"]),
             Paragraph(f"Drone {escape(f.drone_id)} &middot; {span} &middot; {len(report.alerts)} alerts: "
                       f"<b>{len(visit)} to visit</b> ({counts['high']} high, {counts['medium']} medium, "
                       f"{counts['low']} low), {len(crew) - len(visit)} repaired, "
                       f"{len(report.false_alarms)} false alarms (appendix)", styles["Normal"]),
             Spacer(1, 3 * mm), line_map(report, numbers, 180 * mm, 95 * mm), Spacer(1, 3 * mm),
             Paragraph("Faults to visit, most severe first", styles["Heading2"])]
    rows = [["#", "Fault", "Tower", "Position", "Recommended action"]]
    for a in visit:
        tower = f"{a.tower} ({a.line})" if a.line else a.tower
        rows.append([str(numbers[a.id]), Paragraph(f"<b>{escape(a.fault_class)}</b> {a.severity}<br/>"
                                                   f"{escape(a.status.replace('_', ' '))}", small),
                     Paragraph(escape(tower), small), Paragraph(f"{a.lat:.6f}, {a.lon:.6f}", small),
                     Paragraph(escape(action(a.fault_class)), small)])
    if visit:
        story.append(grid(rows, [8 * mm, 32 * mm, 25 * mm, 38 * mm, 77 * mm]))
    else:
        story.append(Paragraph("No fault to visit on this flight.", styles["Normal"]))
    story.append(PageBreak())
    for tower, alerts in report.by_tower(crew).items():
        line = next((a.line for a in alerts if a.line), None)
        where = report.tower_at(alerts[0])
        title = (f"Tower {escape(tower)}" + (f" (line {escape(line)})" if line else "")
                 + (f" &middot; {where[0]:.6f}, {where[1]:.6f}" if where else "")
                 if tower != "-" else "No tower in the register")
        story.append(Paragraph(title, styles["Heading2"]))
        rows = [["#", "Crop", "Fault", "Position", "Status and action"]]
        for a in alerts:
            crop = ""
            if a.boxed or a.crop:
                try:
                    crop = RLImage(io.BytesIO(a.boxed or a.crop), width=30 * mm, height=30 * mm, kind="proportional")
                except Exception:  # a crop reportlab cannot read: the row stays, without it
                    crop = "(unreadable)"
            fault = Paragraph(f"<b>{escape(a.fault_class)}</b> ({a.severity})<br/>confidence {a.confidence:.2f}<br/>"
                              f"<font size=7>{escape(a.id)}</font><br/>"
                              f"<font size=7>model {escape(a.model_version or '-')}</font>", styles["Normal"])
            place = Paragraph(f"{a.lat:.6f}, {a.lon:.6f}<br/>alt {a.alt:.0f} m<br/>span {escape(a.span or '-')}<br/>"
                              f"{a.time.strftime('%H:%M:%S')} UTC", styles["Normal"])
            todo = Paragraph(f"<b>{escape(a.status.replace('_', ' '))}</b><br/>{escape(action(a.fault_class))}", small)
            rows.append([str(numbers[a.id]), crop, fault, place, todo])
        story += [grid(rows, [8 * mm, 33 * mm, 50 * mm, 37 * mm, 52 * mm]), Spacer(1, 5 * mm)]
    if not report.alerts:
        story.append(Paragraph("No faults were alerted on this flight.", styles["Normal"]))
    if report.false_alarms:
        story += [PageBreak(), Paragraph("Appendix: false alarms (for the record; no visit needed)",
                                         styles["Heading2"])]
        rows = [["Alert", "Class", "Tower", "Position", "Judged by"]]
        for a in report.false_alarms:
            by = next((e["actor"] for e in reversed(a.history) if e["field"] == "status" and e["new"] == "false_alarm"),
                      "-")
            rows.append([Paragraph(escape(a.id), small), escape(a.fault_class), escape(a.tower),
                         f"{a.lat:.6f}, {a.lon:.6f}", Paragraph(escape(by), small)])
        story.append(grid(rows, [50 * mm, 25 * mm, 20 * mm, 40 * mm, 45 * mm]))
    doc.build(story)
    return buf.getvalue()
