"""This drone's identity and endpoints (`pli device init`), with its secrets kept out of it.

The config file names where the secrets are (an environment variable, or a key file outside
the repository) and never holds them: the HMAC key that signs BeiDou alerts and the MQTT
password. The drone's sequence numbers live in the outbox database, not here.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from comms.alert import alert_id
from comms.settings import drone_settings


@dataclass(frozen=True)
class DeviceConfig:
    drone_id: str
    fleet: str
    key_id: int
    ground_address: str  # the ground station's BeiDou address (7 digits)
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_user: str | None = None  # default: <fleet>/<drone id> (the broker's ACL pattern pli/%u/...)
    mqtt_tls_ca: str | None = None
    key_file: str | None = None  # else the key comes from $PLI_DEVICE_KEY
    group: str = "fleet"  # the rollout group it takes releases for (canary, fleet, ...); signed metadata decides
    update_url: str | None = None  # the cloud's API, where the fleet's TUF repository is served

    def __post_init__(self) -> None:
        alert_id(self.drone_id, 0, 0)  # validates the drone id
        if not re.fullmatch(r"\d{7}", self.ground_address):
            raise ValueError(f"ground BeiDou address {self.ground_address!r} must be 7 digits")
        if not 0 <= self.key_id <= 0xFFFF:
            raise ValueError(f"key id {self.key_id} out of range 0..65535")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> DeviceConfig:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{path}: not a device config ({exc})") from None

    def key(self) -> bytes:
        """The HMAC key: from the key file when one is named, else from $PLI_DEVICE_KEY (hex)."""
        if self.key_file:
            try:
                text = Path(self.key_file).read_text().strip()
            except OSError as exc:
                raise ValueError(f"key file {self.key_file}: {exc.strerror}") from None
        else:
            text = (drone_settings().device_key or "").strip()
            if not text:
                raise ValueError("no device key: set $PLI_DEVICE_KEY (hex) or name a key file")
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise ValueError("the device key must be hex") from None
        if len(key) < 16:
            raise ValueError(f"the device key has {len(key)} bytes; at least 16 are needed")
        return key

    def mqtt_password(self) -> str | None:
        return drone_settings().mqtt_password


def state_dir(config: Path) -> Path:
    """Where a drone keeps its update state (TUF metadata, staged models, what it runs): `tuf/`
    beside its device file."""
    return Path(config).resolve().parent / "tuf"


def status_path(config: Path) -> Path:
    """The runtime's report of what it runs (edge/status.py), which the link publishes."""
    return state_dir(config) / "status.json"
