"""The operators' pages a line crew works in, in a real browser (Debian's Chromium, headless,
through selenium) against `pli cloud serve` on loopback: alerts filtered and opened, the box on
the photo and zoom at the pointer, reclassify (fault and severity follow), a false alarm
confirmed (the fault reopens), the flight reviewed by keyboard, the map with towers, spans and one
marker per alert, an admin promoting a release from the page, and the API's docs from bundled
assets. Screenshots go to test-artifacts/."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import select

from cloud.alerts import record
from cloud.db import session_scope, upgrade
from cloud.local_server import CloudServer
from cloud.models import Alert, AlertEvent, Deployment, Fault
from cloud.operators import add_operator
from cloud.registry import keys, rollout
from cloud.registry.tuf_repo import TufRepo
from cloud.tokens import create_token
from cloud.towers import import_towers, read_csv
from cloud.upload_client import upload
from comms import alert_json
from comms.alert import Alert as Record
from comms.classes import Severity

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
PASSWORD = "correct horse battery"
TOWERS = "line,tower,lat,lon\nL1,T01,25.3000,103.1000\nL1,T02,25.3030,103.1040\nL1,T03,25.3060,103.1080\n"
# six alerts in three places: two pairs share a place within a metre (the map must show six markers)
PLACES = [(25.30005, 103.10004, "defect"), (25.300052, 103.100041, "defect"), (25.30006, 103.10005, "bird_nest"),
          (25.30302, 103.10409, "flashover"), (25.303021, 103.104091, "defect"), (25.30601, 103.10801, "bird_nest")]
BOX = (120.0, 80.0, 200.0, 160.0)  # on a 400x300 photo


def _crop(i: int) -> bytes:
    img = np.zeros((96, 96, 3), np.uint8)
    cv2.circle(img, (48, 48), 20 + 3 * i, (40, 90, 220), -1)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _release_files(tmp: Path, version: str, frames: Path) -> list[Path]:
    """A release of the shipped model: its build, card and golden frames (edge/golden.py)."""
    from edge import golden
    from edge.detector import Detector

    shipped = ROOT / "models" / "pli-default.onnx"
    rel = tmp / version
    rel.mkdir(parents=True)
    shutil.copyfile(shipped, rel / "pli-next.onnx")
    images = {p.name: cv2.imread(str(p)) for p in sorted(frames.glob("*.jpg"))[:4]}  # a synthetic flight's
    (rel / "pli-next.golden.json").write_text(json.dumps(golden.make(Detector(shipped), images, 0.25)))
    card = {**json.loads(shipped.with_suffix(".json").read_text()), "version": version,
            "sha256": hashlib.sha256((rel / "pli-next.onnx").read_bytes()).hexdigest(),
            "golden": "pli-next.golden.json"}
    (rel / "pli-next.json").write_text(json.dumps(card))
    return sorted(rel.iterdir())


@pytest.fixture(scope="module")
def site(tmp_path_factory, flight):
    """Towers T01-T03 of line L1; flight F8 (six alerts with crops, boxes and uploaded photos, a
    track); an operator and an admin; a TUF repository with the online keys as files and release
    2026.12.01 recorded; `pli cloud serve` on a free loopback port."""
    work = tmp_path_factory.mktemp("operator-pages")
    url = f"sqlite:///{work / 'cloud.db'}"
    env = {"PLI_DATABASE_URL": url, "PLI_CLOUD_DIR": str(work / "cloud"), "PLI_TUF_DIR": str(work / "repo"),
           "PLI_OBJECT_STORE": str(work / "objects"), "PLI_TILE_URL": "", "PLI_ANNOTATION_SECRET": "s" * 32}
    for role in keys.ONLINE_ROLES:
        keys.generate(work / "online" / f"{role}.pem")
        env[f"PLI_TUF_{role.upper()}_KEY_FILE"] = str(work / "online" / f"{role}.pem")
    upgrade(url)
    roots = [keys.generate(work / "offline" / f"root-{i}.pem") for i in range(3)]
    signers = [keys.load_signer(work / "offline" / f"root-{i}.pem") for i in range(2)]
    TufRepo.create(work / "repo", roots, signers,
                   {r: keys.load_signer(work / "online" / f"{r}.pem") for r in keys.ONLINE_ROLES})
    with session_scope(url) as s:
        import_towers(s, read_csv(TOWERS))
        add_operator(s, "alice", PASSWORD)
        add_operator(s, "root", PASSWORD, role="admin")
        fleet = create_token(s, "uav-07", "fleet", "fleet1")
    for i, (lat, lon, cls) in enumerate(PLACES):
        a = Record("UAV-07", i + 1, "F8", T0 + timedelta(seconds=10 * i), lat, lon, 1600.0, cls, 0.8 + i / 50,
                   Severity.HIGH if cls == "defect" else Severity.MEDIUM, position_source="laser", epoch=1,
                   class_list_version=2, model_version="pli-default/2026.11.22", source_frame=f"DJI_{i:04d}.JPG",
                   box=BOX)
        with session_scope(url) as s:
            record(s, "pli/fleet1/UAV-07/alerts", alert_json.dumps(a, _crop(i)))
    with session_scope(url) as s:
        from cloud.flights import record_track

        record_track(s, "F8", "UAV-07", [[25.2998 + k * 0.0002, 103.0998 + k * 0.00027] for k in range(32)])
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the release is recorded in-process, into the server's cloud folder
    try:
        with session_scope(url) as s:
            rollout.add_release(s, "2026.12.01", _release_files(work / "releases", "2026.12.01",
                                                                        flight.out / "images"))
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    with CloudServer(env) as server:
        flight = work / "flight"
        (flight / "images").mkdir(parents=True)
        for i in range(len(PLACES)):
            img = np.random.default_rng(i).integers(0, 120, (300, 400, 3), dtype=np.uint8)
            img = cv2.GaussianBlur(img, (0, 0), 6) + np.array([60, 40, 20], np.uint8)  # sky-like, small PNGs
            cv2.ellipse(img, (160, 120), (30, 22), 0, 0, 360, (40, 60, 90), -1)  # something in the box
            cv2.imwrite(str(flight / "images" / f"DJI_{i:04d}.JPG"), img)
        (flight / "flight.json").write_text('{"flight_id": "F8"}')
        upload(flight, server.base, fleet, "UAV-07", progress=False)
        yield server.base, url


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1400"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


@pytest.fixture
def browser(site):
    driver = _browser()
    yield driver
    driver.quit()


def _login(driver, base: str, name: str = "alice", target: str = "/ui/") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}{target}")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login").click()
    path = target.split("?")[0]
    WebDriverWait(driver, 20).until(lambda d: urlparse(d.current_url).path == path)  # not /login?next=...


def _wait(driver, condition, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _ids(url: str) -> dict[int, str]:
    with session_scope(url) as s:
        return {a.seq: a.id for a in s.scalars(select(Alert))}


def _shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / name))


def _no_csp_errors(driver) -> None:
    logs = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not [m for m in logs if "Content Security Policy" in m or "Refused" in m], logs


def test_an_operator_filters_alerts_and_opens_one_with_the_box_on_its_photo(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base, _ = site
    _login(browser, base, target="/ui/alerts")
    rows = browser.find_elements(By.CSS_SELECTOR, "#alerts tr")[1:]
    assert len(rows) == len(PLACES)
    assert {a.text for a in browser.find_elements(By.CSS_SELECTOR, "header nav a")} >= {
        "Alerts", "Faults", "Towers", "Flights", "Releases", "Jobs", "Learning"}
    Select(browser.find_element(By.NAME, "class")).select_by_value("defect")
    browser.find_element(By.NAME, "tower").send_keys("T01")
    browser.find_element(By.CSS_SELECTOR, "#alert-filters button[type=submit]").click()
    _wait(browser, lambda d: "class=defect" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#alerts tr")[1:]
    assert len(rows) == 2 and all("defect" in r.text and "T01" in r.text for r in rows)
    _shot(browser, "alerts.png")
    browser.find_element(By.NAME, "q").send_keys("DJI_0001")  # text search within the filters
    browser.find_element(By.CSS_SELECTOR, "#alert-filters button[type=submit]").click()
    _wait(browser, lambda d: "q=DJI_0001" in d.current_url)
    (row,) = browser.find_elements(By.CSS_SELECTOR, "#alerts tr")[1:]
    assert "defect" in row.text
    browser.get(f"{base}/ui/alerts?since=yesterday")
    assert "since:" in browser.find_element(By.CSS_SELECTOR, "p.error").text  # said, not a JSON error
    browser.get(f"{base}/ui/alerts?class=defect&tower=T01&q=DJI_0001")
    browser.find_element(By.CSS_SELECTOR, "#alerts tr td a").click()
    _wait(browser, lambda d: "/ui/alerts/" in d.current_url)
    _wait(browser, lambda d: d.execute_script("return document.querySelector('#photo .stage').dataset.ready"))
    def rect(selector: str) -> dict:
        return browser.execute_script("const r = document.querySelector(arguments[0]).getBoundingClientRect();"
                                      "return {x: r.x, y: r.y, width: r.width, height: r.height};", selector)

    img = rect("#photo .layer img")
    assert browser.find_element(By.CSS_SELECTOR, "#photo .box").is_displayed()
    r = rect("#photo .box")
    scale = img["width"] / 400
    assert abs(r["x"] - (img["x"] + BOX[0] * scale)) < 3 and abs(r["width"] - (BOX[2] - BOX[0]) * scale) < 4
    assert abs(r["y"] - (img["y"] + BOX[1] * scale)) < 3
    # zoom at the pointer: the box's centre under the pointer stays under it while it grows
    cx, cy = r["x"] + r["width"] / 2, r["y"] + r["height"] / 2
    for _ in range(3):
        browser.execute_script("""const s = document.querySelector('#photo .stage');
            s.dispatchEvent(new WheelEvent('wheel', {deltaY: -100, clientX: arguments[0], clientY: arguments[1],
                                                      bubbles: true, cancelable: true}));""", cx, cy)
    z = rect("#photo .box")
    assert z["width"] > r["width"] * 1.8
    assert abs(z["x"] + z["width"] / 2 - cx) < 3 and abs(z["y"] + z["height"] / 2 - cy) < 3
    _shot(browser, "alert.png")
    _no_csp_errors(browser)


def test_reclassify_moves_the_fault_and_a_false_alarm_confirmed_reopens_it(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base, url = site
    ids = _ids(url)
    _login(browser, base, target=f"/ui/alerts/{ids[5]}")  # the defect at T02
    Select(browser.find_element(By.CSS_SELECTOR, "select.reclass")).select_by_value("bird_nest")
    _wait(browser, lambda d: d.find_element(By.ID, "status").text == "reclassified")
    browser.get(f"{base}/ui/alerts/{ids[4]}")  # the flashover at T02: false alarm, then confirmed after all
    browser.find_element(By.CSS_SELECTOR, 'button.act[data-status="false_alarm"]').click()
    _wait(browser, lambda d: d.find_element(By.ID, "status").text == "false alarm")
    with session_scope(url) as s:
        assert s.get(Fault, s.get(Alert, ids[4]).fault_id).status == "false_alarm"
    assert browser.find_element(By.CSS_SELECTOR, 'button.act[data-status="repaired"]').get_attribute("disabled")
    browser.find_element(By.CSS_SELECTOR, 'button.act[data-status="confirmed"]').click()
    _wait(browser, lambda d: d.find_element(By.ID, "status").text == "confirmed")
    with session_scope(url) as s:
        nest = s.get(Alert, ids[5])
        assert (nest.fault_class, nest.severity, nest.status) == ("bird_nest", "medium", "reclassified")
        fault = s.get(Fault, nest.fault_id)
        assert (fault.fault_class, fault.severity) == ("bird_nest", "medium")
        assert s.get(Fault, s.get(Alert, ids[4]).fault_id).status == "open"  # reopened
        trail = [(e.old, e.new, e.actor) for e in s.scalars(select(AlertEvent).where(
            AlertEvent.alert_id == ids[4], AlertEvent.field == "status").order_by(AlertEvent.id))]
        assert trail == [("new", "false_alarm", "alice (operator)"), ("false_alarm", "confirmed", "alice (operator)")]
    r = httpx.get(f"{base}/ui/", cookies={"pli_session": browser.get_cookie("pli_session")["value"]})
    assert r.status_code == 200 and "/ui/alerts?status=open" in r.text  # the open counts are links


def test_the_map_shows_towers_spans_and_every_alert_as_a_distinct_marker(site, browser):
    from selenium.webdriver.common.by import By

    base, _ = site
    _login(browser, base, target="/ui/flights/F8")
    markers = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".leaflet-marker-pane .fault-marker")
                    if len(d.find_elements(By.CSS_SELECTOR, ".leaflet-marker-pane .fault-marker")) == len(PLACES)
                    else False)
    centres = [(m.rect["x"] + m.rect["width"] / 2, m.rect["y"] + m.rect["height"] / 2) for m in markers]
    for i, a in enumerate(centres):
        for b in centres[i + 1:]:
            assert abs(a[0] - b[0]) + abs(a[1] - b[1]) >= 8, "two markers cover each other"
    assert len(browser.find_elements(By.CSS_SELECTOR, ".tower-marker")) == 3
    assert len(browser.find_elements(By.CSS_SELECTOR, "path.span")) == 2
    assert browser.find_elements(By.CSS_SELECTOR, "path.track")
    assert "Severity" in browser.find_element(By.CSS_SELECTOR, ".map-legend").text
    assert browser.find_element(By.CSS_SELECTOR, ".leaflet-control-scale")
    assert "PLI_TILE_URL" in browser.find_element(By.CSS_SELECTOR, ".map-note").text  # no basemap: said how
    _shot(browser, "flight-map.png")
    browser.get(f"{base}/ui/towers")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".tower-marker"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#towers tr")) == 4
    _shot(browser, "towers.png")
    _no_csp_errors(browser)


def test_a_flight_is_reviewed_without_the_mouse(site, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    base, url = site
    ids = _ids(url)
    _login(browser, base, target="/ui/flights/F8")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "article.fault"))
    keys = ActionChains(browser)
    keys.send_keys("j").send_keys("c").perform()  # the first alert: confirmed
    first = browser.find_element(By.ID, f"alert-{ids[1]}")
    _wait(browser, lambda d: first.get_attribute("data-saved") == "confirmed")
    ActionChains(browser).send_keys("j" * 5).send_keys("f").perform()  # the sixth: a false alarm
    last = browser.find_element(By.ID, f"alert-{ids[6]}")
    _wait(browser, lambda d: last.get_attribute("data-saved") == "false_alarm")
    assert "selected" in last.get_attribute("class")
    with session_scope(url) as s:
        assert s.get(Alert, ids[1]).status == "confirmed" and s.get(Alert, ids[6]).status == "false_alarm"


def test_an_admin_promotes_a_release_from_the_page_and_an_operator_sees_no_button(site, browser):
    from selenium.webdriver.common.by import By

    base, url = site
    _login(browser, base, target="/ui/releases")
    assert not browser.find_elements(By.CSS_SELECTOR, "button.promote")  # alice is an operator
    assert "2026.12.01" in browser.find_element(By.ID, "releases").text
    browser.delete_all_cookies()
    _login(browser, base, name="root", target="/ui/releases")
    browser.find_element(By.CSS_SELECTOR, 'button.promote[data-version="2026.12.01"]').click()
    _wait(browser, lambda d: "canary" in d.find_element(By.CSS_SELECTOR, "#releases td.groups").text)
    with session_scope(url) as s:
        (d,) = s.scalars(select(Deployment)).all()
        assert (d.target, d.status) == ("canary", "announced")
    assert "canary" in browser.find_element(By.ID, "deployments").text
    browser.find_element(By.CSS_SELECTOR, 'button.approve[data-version="2026.12.01"]').click()  # after the canary
    _wait(browser, lambda d: "fleet" in d.find_element(By.CSS_SELECTOR, "#releases td.groups").text)
    with session_scope(url) as s:
        assert [(d.target, d.status) for d in s.scalars(select(Deployment).order_by(Deployment.id))] == [
            ("canary", "announced"), ("fleet", "announced")]
    _shot(browser, "releases.png")


def test_every_list_and_detail_page_answers_and_links_onward(site):
    base, url = site
    login = httpx.post(f"{base}/login", data={"name": "alice", "password": PASSWORD}, follow_redirects=False)
    c = {"pli_session": login.cookies["pli_session"]}
    with session_scope(url) as s:
        fault = s.scalars(select(Fault).order_by(Fault.id)).first().id
    pages = {"/ui/faults": "/ui/faults/", f"/ui/faults/{fault}": "sighting", "/ui/towers": "/ui/towers/L1/T01",
             "/ui/towers/L1/T01": "/ui/faults/", "/ui/flights": "/ui/flights/F8", "/ui/jobs": "Jobs",
             "/ui/learning": "2026.12.01", "/ui/alerts?status=open&severity=high": "/ui/alerts/"}
    for path, expected in pages.items():
        r = httpx.get(f"{base}{path}", cookies=c)
        assert r.status_code == 200 and expected in r.text, path
        assert "script-src 'self'" in r.headers["content-security-policy"]
    assert httpx.get(f"{base}/ui/faults/999999", cookies=c).status_code == 404
    assert httpx.get(f"{base}/ui/towers/L1/T99", cookies=c).status_code == 404
    assert httpx.get(f"{base}/ui/faults", follow_redirects=False).status_code == 303  # no login: to the login
    r = httpx.get(f"{base}/ui/alerts", params={"q": "<script>alert(1)</script>"}, cookies=c)
    assert "<script>alert(1)" not in r.text and "&lt;script&gt;" in r.text


def test_the_api_docs_load_from_bundled_assets(site, browser):
    from selenium.webdriver.common.by import By

    base, _ = site
    browser.get(f"{base}/docs")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) > 10)
    browser.get(f"{base}/redoc")
    _wait(browser, lambda d: "pli cloud" in d.find_element(By.TAG_NAME, "body").text
          and d.find_elements(By.CSS_SELECTOR, "[role=menuitem], li[data-item-id]"))
    origins = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert origins and all(o.startswith(base) or o.startswith("blob:") or o.startswith("data:") for o in origins)
    _no_csp_errors(browser)


def test_the_crews_report_lists_the_faults_to_visit_by_severity_and_leaves_false_alarms_out(site):
    """The first page: the map and the ordered list; per tower its coordinates; false alarms only
    in the appendix. Marks alert 3 a false alarm first (whatever the tests before it did)."""
    from pypdf import PdfReader

    base, url = site
    ids = _ids(url)
    with session_scope(url) as s:
        from cloud.alerts import change_status

        a = s.get(Alert, ids[3])
        if a.status != "false_alarm":
            change_status(s, a, "false_alarm", "alice (operator)", "test")
    with httpx.Client(base_url=base) as c:
        c.post("/login", data={"name": "alice", "password": PASSWORD})
        r = c.get("/ui/flights/F8/report.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "crew-report.pdf").write_bytes(r.content)
    pages = [p.extract_text() for p in PdfReader(io.BytesIO(r.content)).pages]
    first = pages[0]
    assert "Faults to visit, most severe first" in first
    with session_scope(url) as s:
        rows = {a.id: a for a in s.scalars(select(Alert))}
    visit = [a for a in rows.values() if a.status in ("new", "confirmed", "reclassified")]
    table = first.split("most severe first")[1]
    listed = re.findall(r"^(\d+)\n(defect|bird_nest|flashover) (high|medium|low)$", table, re.M)
    assert len(listed) == len(visit) and [int(n) for n, _, _ in listed] == list(range(1, len(visit) + 1))
    ranks = [("high", "medium", "low").index(sev) for _, _, sev in listed]
    assert ranks == sorted(ranks)  # most severe first
    assert "replace the insulator string" in first  # the class list's action
    false = [a for a in rows.values() if a.status == "false_alarm"]
    body = "\n".join(p for p in pages if "Appendix: false alarms" not in p)
    appendix = next(p for p in pages if "Appendix: false alarms" in p)
    for a in false:
        assert a.id not in body and a.id in appendix
    assert "Tower T01 (line L1) · 25.300000, 103.100000" in body


def test_a_local_mbtiles_basemap_is_served_to_logged_in_operators_only(tmp_path, monkeypatch):
    import sqlite3

    from fastapi.testclient import TestClient

    from cloud.api.app import create_app

    tiles = tmp_path / "line.mbtiles"
    png = cv2.imencode(".png", np.full((256, 256, 3), 200, np.uint8))[1].tobytes()
    with sqlite3.connect(tiles) as con:
        con.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        con.execute("CREATE TABLE tiles (zoom_level INT, tile_column INT, tile_row INT, tile_data BLOB)")
        con.execute("INSERT INTO metadata VALUES ('format', 'png')")
        con.execute("INSERT INTO tiles VALUES (3, 5, 2, ?)", (png,))  # TMS row 2 at zoom 3: XYZ y = 5
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    monkeypatch.setenv("PLI_TILE_FILE", str(tiles))
    monkeypatch.delenv("PLI_TILE_URL", raising=False)
    upgrade(url)
    with session_scope(url) as s:
        add_operator(s, "alice", PASSWORD)
    with TestClient(create_app(url)) as c:
        assert c.get("/ui/tiles/3/5/5").status_code == 401
        c.post("/login", data={"name": "alice", "password": PASSWORD})
        r = c.get("/ui/tiles/3/5/5")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == png
        assert c.get("/ui/tiles/3/5/2").status_code == 404  # rows are flipped: no tile there
        assert c.get("/ui/tiles/3/9/0").status_code == 404  # off the zoom level's grid
        assert '"url": "/ui/tiles/{z}/{x}/{y}"' in c.get("/ui/towers").text  # the map asks the cloud


def test_review_tasks_show_the_alerts_box_on_its_crop_and_its_photo(site, monkeypatch):
    """What Label Studio's review task loads: the photo around the box and the whole photo, both
    with the box drawn (yellow), behind the signed links; a thumbnail blown up is gone."""
    from annotation import backend

    base, url = site
    monkeypatch.setenv("PLI_ANNOTATION_SECRET", "s" * 32)
    ids = _ids(url)
    with session_scope(url) as s:
        a = s.get(Alert, ids[2])
        doc = {"id": a.id, "fault_class": a.fault_class, "confidence": a.confidence, "severity": a.severity,
               "tower": a.tower_id, "model_version": a.model_version, "image_id": a.image_id}
    task = backend.review_task(base, doc)["data"]
    assert "T01" in task["title"] and "defect (high)" in task["title"]
    crop, photo = httpx.get(task["crop"]), httpx.get(task["image"])
    assert crop.status_code == photo.status_code == 200
    assert httpx.get(task["image"].split("?")[0]).status_code == 403
    crop_img = cv2.imdecode(np.frombuffer(crop.content, np.uint8), cv2.IMREAD_COLOR)
    photo_img = cv2.imdecode(np.frombuffer(photo.content, np.uint8), cv2.IMREAD_COLOR)
    assert photo_img.shape[:2] == (300, 400) and max(crop_img.shape[:2]) == 360

    def yellow(img) -> np.ndarray:
        b, g, r = (img[..., k].astype(int) for k in range(3))
        return (r > 200) & (g > 160) & (b < 90)

    x1, y1, x2, y2 = (int(v) for v in BOX)
    assert yellow(photo_img)[y1 - 1:y1 + 2, x1 + 10:x2 - 10].mean() > 0.5  # the box's top edge
    assert not yellow(photo_img)[y1 + 10:y2 - 10, x1 + 10:x2 - 10].any()  # inside: the photo as it was
    assert yellow(crop_img).sum() > 200


@pytest.fixture(scope="module")
def demo_flight(tmp_path_factory):
    """The README demo's flight (24 frames of 1920x1080, seed 21) flown by the edge runtime with the
    shipped INT8 model, its alerts stored as the cloud's ingest stores them, its towers and its
    track (telemetry.csv) recorded, and `pli cloud serve` on it."""
    from comms.outbox import Outbox
    from edge.runtime import RunConfig, run_flight
    from edge.telemetry import load_track
    from training.synth.flight import generate_flight

    work = tmp_path_factory.mktemp("demo-flight")
    flight = generate_flight(work / "flight", frames=24, size=(1920, 1080), seed=21, progress=False)
    flight_id = json.loads((flight.out / "flight.json").read_text())["flight_id"]
    box = Outbox(work / "outbox.db", "UAV-01")
    run_flight(flight.out / "images", ROOT / "models" / "pli-default-int8.onnx", box,
               RunConfig(drone_id="UAV-01", flight_id=flight_id), progress=False)
    queued = box.due("mqtt", limit=1000)
    url = f"sqlite:///{work / 'cloud.db'}"
    upgrade(url)
    with session_scope(url) as s:
        import_towers(s, read_csv((flight.out / "towers.csv").read_text()))
        add_operator(s, "alice", PASSWORD)
    for q in queued:
        with session_scope(url) as s:
            record(s, "pli/fleet1/UAV-01/alerts", alert_json.dumps(q.alert, q.thumb))
    with session_scope(url) as s:
        from cloud.flights import record_track

        record_track(s, flight_id, "UAV-01", [[f.lat, f.lon] for f in load_track(flight.out / "telemetry.csv")
                                              if f.lat is not None])
    with CloudServer({"PLI_DATABASE_URL": url, "PLI_CLOUD_DIR": str(work / "cloud"), "PLI_TILE_URL": ""}) as server:
        yield server.base, url, flight_id, len(queued)


def test_the_demo_flight_s_map_shows_its_towers_and_every_alert_as_a_distinct_marker(demo_flight, browser):
    from selenium.webdriver.common.by import By

    base, url, flight_id, n = demo_flight
    assert n >= 2, "the demo flight raised fewer than two alerts: nothing to tell apart"
    _login(browser, base, target=f"/ui/flights/{flight_id}")
    selector = ".leaflet-marker-pane .fault-marker"
    markers = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, selector)
                    if len(d.find_elements(By.CSS_SELECTOR, selector)) == n else False)
    centres = [(m.rect["x"] + m.rect["width"] / 2, m.rect["y"] + m.rect["height"] / 2) for m in markers]
    for i, a in enumerate(centres):
        for b in centres[i + 1:]:
            assert abs(a[0] - b[0]) + abs(a[1] - b[1]) >= 8, "two markers cover each other"
    with session_scope(url) as s:
        from cloud.models import Tower

        towers = len(s.scalars(select(Tower)).all())
    assert len(browser.find_elements(By.CSS_SELECTOR, ".tower-marker")) == towers > 0
    assert browser.find_elements(By.CSS_SELECTOR, "path.track") and browser.find_elements(By.CSS_SELECTOR, "path.span")
    _shot(browser, "demo-flight-map.png")
