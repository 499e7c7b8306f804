"""`pli edge doctor`: is this drone ready to fly? Each check says what it found and, where it
fails, what to fix; the command exits non-zero when any fails.

Checked: the execution providers onnxruntime has and the one a session chooses; the model's card
(present, its sha256 the file's) and whether the file is a target of the fleet's signed TUF
metadata on the drone; the TUF root (installed, not expired) and the other trusted metadata's
expiry; the clock (GNSS time from the autopilot over MAVLink against this computer's, else the
wall clock alone); the serial ports of the BeiDou terminal and the modem (present, openable);
the outbox (what is unsent) and the free disk beside it; the autopilot's MAVLink heartbeat.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from comms.alert import VALID_FROM
from comms.device import state_dir
from edge.detector import DEFAULT_PROVIDERS, file_sha256
from edge.model_card import ModelCard

OK, WARN, FAIL = "ok", "warn", "FAIL"
MIN_FREE_MB = 200  # below this the outbox's reserve and the crops run out within a flight
MAX_SKEW_S = 2.0  # alert times are to the second; a BeiDou message carries seconds
EXPIRY_WARN = timedelta(days=14)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | FAIL
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status:>4}  {self.name}: {self.detail}" + (f"\n      fix: {self.fix}" if self.fix else "")


def providers(model: Path | None) -> Check:
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = [p for p in DEFAULT_PROVIDERS if p in available]
    detail = f"available {', '.join(available)}"
    if model is not None and model.is_file():
        from edge.detector import Detector

        try:
            chosen = Detector(model).session.get_providers()[0]
        except Exception as exc:  # a model onnxruntime cannot load: the model check fails it
            return Check("providers", WARN, f"{detail}; none chosen, the model does not load: {str(exc)[:200]}",
                         "see the model check")
        detail += f"; chosen {chosen}"
        if wanted[0] != chosen:
            return Check("providers", WARN, detail, f"{wanted[0]} is available but not chosen")
    if wanted[0] == "CPUExecutionProvider":
        return Check("providers", WARN, detail + " (CPU only)",
                     "on a Jetson install NVIDIA's onnxruntime-gpu wheel for JetPack (README: Jetson)")
    return Check("providers", OK, detail)


def _trusted_targets(tuf: Path) -> dict[str, str]:
    """sha256 -> target path of every target in the drone's trusted targets metadata."""
    out = {}
    for meta in sorted((tuf / "metadata").glob("*.json")):
        try:
            signed = json.loads(meta.read_text()).get("signed", {})
        except (OSError, ValueError):
            continue
        for path, info in (signed.get("targets") or {}).items():
            sha = (info.get("hashes") or {}).get("sha256")
            if sha:
                out[sha] = path
    return out


def model(model: Path | None, tuf: Path) -> Check:
    if model is None:
        return Check("model", WARN, "not given", "pass --model the ONNX file `pli edge run` will fly")
    if not model.is_file():
        return Check("model", FAIL, f"{model}: no such file", "stage a release (pli edge run --update-url) or copy one")
    card = ModelCard.beside(model)
    sha = file_sha256(model)
    if card is None:
        return Check("model", FAIL, f"{model.name}: no model card beside it", "ship the model with its card (.json)")
    if card.sha256 != sha:
        return Check("model", FAIL, f"{model.name}: sha256 {sha[:12]} is not its card's {card.sha256[:12] or 'none'}",
                     "the file was changed or truncated: stage the release again")
    signed = _trusted_targets(tuf).get(sha)
    detail = f"{model.name}: card {card.version}, {card.precision or 'fp32'}, classes v{card.class_list_version}"
    if signed is None:
        return Check("model", WARN, detail + "; not a target of the fleet's signed metadata on this drone",
                     "fly a release taken through the signed updates (pli device init --update-url --tuf-root)")
    return Check("model", OK, f"{detail}; signed target {signed}")


def tuf_root(tuf: Path, now: datetime) -> Check:
    root = tuf / "metadata" / "root.json"
    if not root.is_file():
        return Check("tuf", FAIL, f"{root}: no trust anchor installed",
                     "pli device init --tuf-root 1.root.json (from the fleet's operators)")
    expiries = {}
    for meta in sorted((tuf / "metadata").glob("*.json")):
        try:
            signed = json.loads(meta.read_text())["signed"]
            expiries[meta.stem] = datetime.fromisoformat(signed["expires"].replace("Z", "+00:00"))
        except (OSError, ValueError, KeyError, TypeError):
            return Check("tuf", FAIL, f"{meta.name}: unreadable metadata",
                         "remove it; the next update fetches it again")
    soonest = min(expiries, key=expiries.get)
    when = expiries[soonest]
    detail = ", ".join(f"{k} expires {v:%Y-%m-%d}" for k, v in expiries.items())
    if expiries["root"] <= now:
        return Check("tuf", FAIL, detail, "the root expired: install the fleet's new root (pli device init --tuf-root)")
    if when <= now:
        return Check("tuf", WARN, detail, f"{soonest} expired: the next update check refreshes it (needs the link)")
    if when - now < EXPIRY_WARN:
        return Check("tuf", WARN, detail, f"{soonest} expires within {EXPIRY_WARN.days} days")
    return Check("tuf", OK, detail)


def clock(telemetry, now: float) -> Check:
    wall = datetime.fromtimestamp(now, UTC)
    if wall < VALID_FROM:
        return Check("clock", FAIL, f"wall clock says {wall:%Y-%m-%d}", "set the clock (chrony with the GNSS "
                     "receiver or NTP); alerts would be re-stamped")
    if telemetry is None or telemetry.clock != "autopilot":
        how = "no MAVLink asked for" if telemetry is None else "no SYSTEM_TIME with GNSS time from the autopilot"
        return Check("clock", WARN, f"wall clock only ({how}); {wall:%Y-%m-%dT%H:%M:%SZ}",
                     "check against GNSS: pli edge doctor --mavlink URL")
    skew = telemetry.skew_s
    detail = f"GNSS time from the autopilot; this computer is {skew:+.3f} s off it"
    if abs(skew) > MAX_SKEW_S:
        return Check("clock", FAIL, detail, "sync the clock to GNSS (chrony with a PPS or the autopilot's time)")
    return Check("clock", OK, detail)


def serial_port(name: str, port: str | None) -> Check:
    if not port:
        return Check(name, WARN, "no port given", f"pass --{name}-port (a udev name such as /dev/pli-{name})")
    if not Path(port).exists():
        return Check(name, FAIL, f"{port}: no such device", "plug it in; check the udev rule (README: Jetson)")
    import serial

    try:
        serial.Serial(port, timeout=0).close()
    except (serial.SerialException, OSError) as exc:
        return Check(name, FAIL, f"{port}: {exc}", "add the user to the dialout group, or stop what holds the port")
    return Check(name, OK, f"{port} opens")


def outbox(path: Path | None) -> Check:
    if path is None:
        return Check("outbox", WARN, "not given", "pass --outbox (default outbox/outbox.db)")
    folder = path.parent if path.parent.exists() else Path.cwd()
    free_mb = shutil.disk_usage(folder).free / 1e6
    unsent = "no outbox yet"
    if path.is_file():
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                rows = dict(db.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state").fetchall())
            finally:
                db.close()
        except sqlite3.Error as exc:
            return Check("outbox", FAIL, f"{path}: {exc}", "the link's outbox is damaged: keep a copy, then run "
                         "pli link run to recover it")
        pending = sum(n for s, n in rows.items() if s not in ("acked", "rejected"))
        unsent = f"{pending} alerts not yet acknowledged, {path.stat().st_size / 1e6:.1f} MB"
    detail = f"{unsent}; {free_mb:,.0f} MB free in {folder}"
    if free_mb < MIN_FREE_MB:
        return Check("outbox", FAIL, detail, f"free at least {MIN_FREE_MB} MB (old crops, logs)")
    return Check("outbox", OK, detail)


def heartbeat(telemetry, url: str | None, waited_s: float) -> Check:
    if url is None:
        return Check("mavlink", WARN, "not asked for", "pass --mavlink URL to check the autopilot's heartbeat")
    if telemetry is None or telemetry.heartbeat_at is None:
        return Check("mavlink", FAIL, f"{url}: no HEARTBEAT in {waited_s:g} s",
                     "check the autopilot's MAVLink output (SERIALn_PROTOCOL, baud) and the URL")
    s = telemetry.summary()
    kinds = ", ".join(f"{k} {v}" for k, v in s["messages"].items())
    if not telemetry.position.t:
        return Check("mavlink", FAIL, f"{url}: heartbeat, but no GLOBAL_POSITION_INT ({kinds})",
                     "enable the position stream (SRx_POSITION / MAV_x_RATE) and wait for a GNSS fix")
    return Check("mavlink", OK, f"{url}: {kinds}")


def diagnose(config: Path, model_path: Path | None = None, outbox_path: Path | None = None,
             beidou_port: str | None = None, modem_port: str | None = None, mavlink: str | None = None,
             wait_s: float = 5.0) -> list[Check]:
    tuf = state_dir(config)
    telemetry = None
    if mavlink:
        from edge.mavlink import Link

        with Link(mavlink) as link:
            deadline = time.monotonic() + wait_s
            t = link.telemetry
            while time.monotonic() < deadline and not (t.heartbeat_at and t.position.t and t.clock == "autopilot"):
                time.sleep(0.1)
            telemetry = t
    now = time.time()
    return [providers(model_path), model(model_path, tuf), tuf_root(tuf, datetime.fromtimestamp(now, UTC)),
            clock(telemetry, now), serial_port("beidou", beidou_port), serial_port("modem", modem_port),
            outbox(outbox_path), heartbeat(telemetry, mavlink, wait_s)]


def report(checks: list[Check], as_json: bool = False) -> tuple[str, int]:
    failed = [c for c in checks if c.status == FAIL]
    if as_json:
        return json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}), 1 if failed else 0
    lines = [c.line() for c in checks]
    lines.append(f"{len(failed)} checks failed: not ready to fly" if failed else "ready to fly"
                 + (f" ({sum(c.status == WARN for c in checks)} warnings)" if any(c.status == WARN for c in checks)
                    else ""))
    return "\n".join(lines), 1 if failed else 0


