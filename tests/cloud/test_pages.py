"""The operators' pages in a real browser: Debian's Chromium, headless, driven by selenium through
Debian's chromedriver, against `pli cloud serve` on loopback. Log in, open a flight report, see
every fault on the map, confirm one alert and mark another false; the database names the
operator. Without a login the page redirects and the photo answers 401. A screenshot is kept in
test-artifacts/."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import select

from cloud.alerts import record
from cloud.db import session_scope, upgrade
from cloud.models import Alert, AlertEvent, Flight
from cloud.operators import add_operator
from cloud.tokens import create_token
from cloud.towers import import_towers, read_csv
from cloud.upload_client import upload
from comms import alert_json
from comms.alert import Alert as Record
from comms.classes import Severity
from comms.local_broker import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
T0 = datetime(2026, 11, 22, 9, tzinfo=UTC)
PASSWORD = "correct horse battery"
PLACES = [(25.30005, 103.10004, "defect"), (25.30012, 103.10011, "bird_nest"), (25.30302, 103.10409, "flashover"),
          (25.30309, 103.10398, "defect")]


def _crop(i: int) -> bytes:
    img = np.zeros((96, 96, 3), np.uint8)
    cv2.circle(img, (48, 48), 20 + 5 * i, (40, 90, 220), -1)
    return cv2.imencode(".jpg", img)[1].tobytes()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A served cloud: towers, flight F7 (4 alerts with crops, a track, its photos uploaded),
    an operator, and `pli cloud serve` on a free loopback port."""
    work = tmp_path_factory.mktemp("pages")
    url = f"sqlite:///{work / 'cloud.db'}"
    env = {**os.environ, "PLI_DATABASE_URL": url, "PLI_CLOUD_DIR": str(work / "cloud")}
    env.pop("PLI_OBJECT_STORE", None)
    upgrade(url)
    with session_scope(url) as s:
        import_towers(s, read_csv("line,tower,lat,lon\nL1,T01,25.3000,103.1000\nL1,T02,25.3030,103.1040\n"))
        add_operator(s, "alice", PASSWORD)
        fleet = create_token(s, "uav-07", "fleet", "fleet1")
    for i, (lat, lon, cls) in enumerate(PLACES):
        a = Record("UAV-07", i + 1, "F7", T0 + timedelta(seconds=10 * i), lat, lon, 1600.0, cls, 0.8 + i / 50,
                   Severity.HIGH if cls == "defect" else Severity.MEDIUM, position_source="laser", epoch=1,
                   class_list_version=2, model_version="pli-default/2026.11.22", source_frame=f"DJI_{i:04d}.JPG")
        with session_scope(url) as s:
            record(s, "pli/fleet1/UAV-07/alerts", alert_json.dumps(a, _crop(i)))
    with session_scope(url) as s:
        s.get(Flight, "F7").track = [[25.2998 + k * 0.0001, 103.0998 + k * 0.00013] for k in range(40)]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pli", "-q", "cloud", "serve", "--port", str(port)], env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                break
        except httpx.HTTPError:
            if server.poll() is not None or time.monotonic() > deadline:
                log = server.stderr.read().decode()[-2000:]
                raise RuntimeError(f"pli cloud serve did not come up: {log}") from None
            time.sleep(0.2)
    flight = work / "flight"
    (flight / "images").mkdir(parents=True)
    for i in range(len(PLACES)):
        img = np.random.default_rng(i).integers(0, 255, (300, 400, 3), dtype=np.uint8)
        cv2.imwrite(str(flight / "images" / f"DJI_{i:04d}.JPG"), img)
    (flight / "flight.json").write_text('{"flight_id": "F7"}')
    upload(flight, base, fleet, "UAV-07", progress=False)
    yield base, url
    server.terminate()
    server.wait(10)


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1800"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def test_without_a_login_the_page_redirects_and_the_photo_answers_401(site):
    base, url = site
    r = httpx.get(f"{base}/ui/flights/F7", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/ui/flights/F7")
    with session_scope(url) as s:
        alert = s.scalar(select(Alert).where(Alert.seq == 1))
        assert alert.image_id is not None  # the upload linked it
    assert httpx.get(f"{base}/alerts/{alert.id}/photo").status_code == 401
    assert httpx.get(f"{base}/alerts/{alert.id}/crop.jpg").status_code == 401
    assert httpx.get(f"{base}/ui/flights/F7/report.pdf", follow_redirects=False).status_code == 303
    bad = httpx.post(f"{base}/login", data={"name": "alice", "password": "wrong password"}, follow_redirects=False)
    assert bad.status_code == 303 and "failed=1" in bad.headers["location"] and "pli_session" not in bad.cookies
    # A logged-in session may change an alert only with its CSRF token (another site cannot forge it).
    ok = httpx.post(f"{base}/login", data={"name": "alice", "password": PASSWORD, "next": "/ui/"},
                    follow_redirects=False)
    cookie = {"pli_session": ok.cookies["pli_session"]}
    r = httpx.patch(f"{base}/alerts/{alert.id}", json={"status": "confirmed"}, cookies=cookie)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    assert httpx.get(f"{base}/alerts/{alert.id}/photo", cookies=cookie).status_code == 200


def test_an_operator_logs_in_and_confirms_and_rejects_alerts_in_the_browser(site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, url = site
    driver = _browser()
    try:
        driver.get(f"{base}/ui/flights/F7")
        assert "/login" in driver.current_url  # redirected
        driver.find_element(By.ID, "name").send_keys("alice")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login").click()
        wait = WebDriverWait(driver, 20)
        wait.until(ec.url_contains("/ui/flights/F7"))
        markers = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".fault-marker")
                             if len(d.find_elements(By.CSS_SELECTOR, ".fault-marker")) == len(PLACES) else False)
        assert len(markers) == len(PLACES) and all(m.is_displayed() for m in markers)
        assert driver.find_elements(By.CSS_SELECTOR, "path.track")  # the track is drawn
        with session_scope(url) as s:
            ids = {a.seq: a.id for a in s.scalars(select(Alert))}
        for seq, action, status in ((1, "confirmed", "confirmed"), (2, "false_alarm", "false_alarm")):
            card = driver.find_element(By.ID, f"alert-{ids[seq]}")
            card.find_element(By.CSS_SELECTOR, f'button.act[data-status="{action}"]').click()
            wait.until(lambda d, card=card, status=status: card.get_attribute("data-saved") == status)
            assert card.find_element(By.CSS_SELECTOR, ".status").text == status
        photo = driver.find_element(By.ID, f"alert-{ids[3]}").find_element(By.CSS_SELECTOR, "a.photo")
        photo.click()  # the original, on the alert's page (tests/cloud/test_operator_pages.py: the box, zoom)
        wait.until(lambda d: d.execute_script(
            "const i = document.querySelector('#photo .layer img'); return i && i.complete && i.naturalWidth") == 400)
        driver.back()
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "flight-report.png"))
    finally:
        driver.quit()
    with session_scope(url) as s:
        rows = {a.seq: a for a in s.scalars(select(Alert))}
        assert rows[1].status == "confirmed" and rows[2].status == "false_alarm" and rows[3].status == "new"
        events = {e.alert_id: e for e in s.scalars(select(AlertEvent))}
        assert events[rows[1].id].actor == events[rows[2].id].actor == "alice (operator)"
        assert (events[rows[2].id].old, events[rows[2].id].new) == ("new", "false_alarm")
    assert (ARTIFACTS / "flight-report.png").stat().st_size > 10_000


def test_the_printable_report_has_a_table_per_tower_with_positions(site):
    from pypdf import PdfReader

    base, _ = site
    with httpx.Client(base_url=base) as c:
        c.post("/login", data={"name": "alice", "password": PASSWORD})
        r = c.get("/ui/flights/F7/report.pdf")
        overview = c.get("/ui/")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    pdf = PdfReader(io.BytesIO(r.content))
    text = "\n".join(p.extract_text() for p in pdf.pages)
    assert len(pdf.pages) >= 1 and "Inspection flight F7" in text
    assert "Tower T01 (line L1)" in text and "Tower T02 (line L1)" in text
    assert "25.300050, 103.100040" in text and "flashover" in text and "UAV-07-00001-0000000003" in text
    assert overview.status_code == 200 and "pli-default/2026.11.22" in overview.text and "F7" in overview.text


XSS_ID = '<img src=x onerror="document.title=\'pwned\';window.pwned=1">'


def test_a_flight_id_with_markup_is_shown_as_text_after_login_in_the_browser(site):
    """The reflected XSS of the "not found" answer: a link to the login whose `next` is a flight
    page named by markup. After logging in, the browser shows the name as text and runs nothing."""
    from urllib.parse import quote

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = site
    driver = _browser()
    try:
        driver.get(f"{base}/login?next={quote('/ui/flights/' + quote(XSS_ID, safe=''), safe='')}")
        driver.find_element(By.ID, "name").send_keys("alice")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login").click()
        text = WebDriverWait(driver, 20).until(
            lambda d: (d.find_elements(By.CSS_SELECTOR, ".not-found") or [None])[0])
        assert text.text == f"There is no flight {XSS_ID}."
        time.sleep(0.5)  # an onerror handler would have run by now
        assert driver.execute_script("return window.pwned === undefined") and driver.title != "pwned"
        assert not driver.find_elements(By.CSS_SELECTOR, "main img")
    finally:
        driver.quit()


def test_every_answer_carries_the_security_headers(site):
    base, _ = site
    ok = httpx.post(f"{base}/login", data={"name": "alice", "password": PASSWORD}, follow_redirects=False)
    cookie = {"pli_session": ok.cookies["pli_session"]}
    page = httpx.get(f"{base}/ui/flights/{quote_id(XSS_ID)}", cookies=cookie)
    assert page.status_code == 404 and XSS_ID not in page.text and "&lt;img src=x" in page.text
    for r in (page, httpx.get(f"{base}/ui/", cookies=cookie), httpx.get(f"{base}/login"),
              httpx.get(f"{base}/health"), httpx.get(f"{base}/alerts"), httpx.get(f"{base}/static/style.css")):
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp.split("style-src")[0], r.url
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff", r.url
        assert "strict-transport-security" not in r.headers  # plain HTTP on loopback: no HSTS
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{base}/alerts").headers["content-security-policy"].startswith("default-src 'none'")


def quote_id(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def test_hsts_only_over_tls_and_a_route_s_own_policy_stands():
    from cloud.api.headers import add_security_headers

    html = [(b"content-type", b"text/html; charset=utf-8")]
    assert dict(add_security_headers(html, https=True))[b"strict-transport-security"].startswith(b"max-age=")
    assert b"strict-transport-security" not in dict(add_security_headers(html, https=False))
    own = add_security_headers([*html, (b"content-security-policy", b"sandbox")], https=False)
    assert [v for k, v in own if k == b"content-security-policy"] == [b"sandbox"]


def _raw_request(base: str, head: str, body_chunks) -> tuple[int, float]:
    """Send a request by hand on a socket (a body as chunks, without Content-Length when the head
    says chunked); the answer's status and how many body bytes were sent before it came."""
    import socket

    host, port = base.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while b"\r\n" not in answer:
            part = sock.recv(4096)
            if not part:
                break
            answer += part
    return int(answer.split(b" ")[1]), sent


def test_bodies_over_the_limit_are_refused_before_they_are_read(site):
    """A 300 MB body to /tokens and a 200 MB login form are answered 413 from their Content-Length
    (the server reads none of it), a chunked body is cut at the route's limit, before the 401."""
    base, _ = site
    for path, size in (("/tokens", 300 << 20), ("/login", 200 << 20)):
        head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {size}\r\n\r\n")
        status, sent = _raw_request(base, head, [])
        assert status == 413 and sent == 0, path
    mib = b"x" * (1 << 20)

    def chunked(n):
        for _ in range(n):
            yield b"%x\r\n" % len(mib) + mib + b"\r\n"
        yield b"0\r\n\r\n"

    head = "POST /tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, sent = _raw_request(base, head, chunked(40))
    assert status == 413
    # Small bodies pass to the route as before: no token, 401.
    assert httpx.post(f"{base}/tokens", json={"subject": "x", "role": "fleet"}).status_code == 401


def test_guessing_a_password_is_slowed_and_the_right_one_waits_too(site):
    """Five wrong passwords for one name, then the right one: refused with 429 and Retry-After
    (it used to be accepted after 40 guesses at 17/s); another name is not held up."""
    base, url = site
    with session_scope(url) as s:
        add_operator(s, "bob", PASSWORD)
    for _ in range(5):
        r = httpx.post(f"{base}/login", data={"name": "bob", "password": "guess guess"}, follow_redirects=False)
        assert r.status_code == 303 and "failed=1" in r.headers["location"]
    r = httpx.post(f"{base}/login", data={"name": "bob", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "pli_session" not in r.cookies
    ok = httpx.post(f"{base}/login", data={"name": "alice", "password": PASSWORD}, follow_redirects=False)
    assert ok.status_code == 303 and "pli_session" in ok.cookies


def test_a_login_form_posted_from_another_site_sets_no_cookie(site):
    base, _ = site
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        r = httpx.post(f"{base}/login", data={"name": "alice", "password": PASSWORD}, headers=headers,
                       follow_redirects=False)
        assert r.status_code == 403 and "pli_session" not in r.cookies, headers
    same = httpx.post(f"{base}/login", data={"name": "alice", "password": PASSWORD},
                      headers={"Origin": base, "Sec-Fetch-Site": "same-origin"}, follow_redirects=False)
    assert same.status_code == 303 and "pli_session" in same.cookies


def test_an_unknown_name_costs_one_scrypt_like_a_wrong_password(tmp_path, monkeypatch):
    """The dummy path ran scrypt twice (128 ms against 82 ms): a name could be told from its time."""
    import hashlib

    from cloud import operators

    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)
    with session_scope(url) as s:
        add_operator(s, "carol", PASSWORD)
    calls = []
    real = hashlib.scrypt
    monkeypatch.setattr(hashlib, "scrypt", lambda *a, **k: calls.append(1) or real(*a, **k))
    with session_scope(url) as s:
        operators.login(s, "nobody", "whatever1")  # warms the dummy hash once
        for name in ("carol", "nobody"):
            calls.clear()
            assert operators.login(s, name, "wrong password") is None
            assert len(calls) == 1, name
