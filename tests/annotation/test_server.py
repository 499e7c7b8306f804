"""`pli annotate server`: Label Studio's credentials never on a command line, and a signal (even
SIGINT with the shell's background SIG_IGN inherited) stops its whole process group."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from comms.local_broker import free_port

pytestmark = pytest.mark.slow


def _cmdlines() -> dict[int, str]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return out


def test_the_session_servers_command_lines_hold_no_secret(label_studio):
    group = os.getpgid(label_studio.proc.pid)
    mine = {pid: cmd for pid, cmd in _cmdlines().items() if _pgid(pid) == group}
    assert mine, "Label Studio's processes"
    for pid, cmd in mine.items():
        assert label_studio.password not in cmd and label_studio.token not in cmd, (pid, cmd[:200])


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_sigint_ignored_by_a_background_shell_still_stops_label_studio(tmp_path):
    port = free_port()
    env = {**os.environ, "PLI_LS_PASSWORD": secrets.token_urlsafe(12), "PLI_LS_TOKEN": secrets.token_hex(20)}
    proc = subprocess.Popen([sys.executable, "-m", "pli", "annotate", "server", "--data-dir", str(tmp_path / "ls"),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        line = proc.stdout.readline()  # printed once Label Studio answers /health
        assert line.startswith("Label Studio at "), line
        ls = [pid for pid, cmd in _cmdlines().items() if f"--port {port}" in cmd and pid != proc.pid]
        assert ls and all(env["PLI_LS_PASSWORD"] not in _cmdlines().get(p, "") for p in ls)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 30
        while any(p in _cmdlines() for p in ls) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(p in _cmdlines() for p in ls), "Label Studio outlived `pli annotate server`"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_label_studio_s_pages_report_to_no_error_tracker(label_studio):
    """Its own Sentry (a DSN built into Label Studio) is off for the server and for the page an
    operator works in, and no analytics script is loaded from another site."""
    with httpx.Client(base_url=label_studio.url, follow_redirects=True) as c:
        login = c.get("/user/login/")
        assert "googletagmanager" not in login.text and "sentry.io" not in login.text
        c.post("/user/login/", data={"email": label_studio.username, "password": label_studio.password,
                                     "csrfmiddlewaretoken": c.cookies["csrftoken"]},
               headers={"Referer": f"{label_studio.url}/user/login/"})
        page = c.get("/projects/")
    assert page.status_code == 200 and "/user/login" not in str(page.url)  # logged in: the app's own page
    assert "sentry_dsn: null" in page.text and "sentry.io" not in page.text
    assert "collect_analytics: false" in page.text
