"""The drone's and the ground station's settings: every `PLI_*` variable they read, with its
default, in one place. A frozen dataclass rather than pydantic-settings (cloud/settings.py):
the drone installs only the edge extra. Read afresh at each `drone_settings()` call, so a
process sees its environment as it is. Secrets (the HMAC key, the MQTT password, the API token)
come from the environment or from files the device config names, never from a command line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

ENV = {  # field -> (variable, what it is); the defaults are the dataclass's
    "device_key": ("PLI_DEVICE_KEY", "the drone's HMAC key in hex, unless the device config names a key file "
                   "(SECRET)"),
    "mqtt_password": ("PLI_MQTT_PASSWORD", "the broker password of the drone, the ground station or ingest (SECRET)"),
    "token": ("PLI_TOKEN", "the drone's API token for signed model updates and uploads (SECRET)"),
    "classes": ("PLI_CLASSES", "a class list file (TOML); default: the packaged comms/classes.toml"),
    "keys_file": ("PLI_KEYS_FILE", "the ground station's drone keys (JSON: key id -> drone id, key)"),
    "cloud_url": ("PLI_CLOUD_URL", "the cloud's API, for uploads"),
}


@dataclass(frozen=True)
class DroneSettings:
    device_key: str | None = None
    mqtt_password: str | None = None
    token: str | None = None
    classes: str | None = None
    keys_file: str | None = None
    cloud_url: str = "http://127.0.0.1:8000"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> DroneSettings:
        env = os.environ if environ is None else environ
        values = {f.name: env[ENV[f.name][0]] for f in fields(cls) if env.get(ENV[f.name][0])}
        for name, (var, text) in ENV.items():  # a secret from a file: PLI_X_FILE=/run/secrets/x
            path = env.get(f"{var}_FILE")
            if "(SECRET)" in text and path and name not in values:
                try:
                    values[name] = Path(path).read_text().strip()
                except OSError as exc:
                    raise ValueError(f"{var}_FILE={path}: {exc.strerror}") from None
        return cls(**values)


def drone_settings() -> DroneSettings:
    return DroneSettings.from_env()


def help_table() -> str:
    """The variables as the drone's `--help` lists them."""
    defaults = DroneSettings()
    rows = [f"  {var}" + (f" (default {getattr(defaults, name)})" if getattr(defaults, name) else "") + f": {text}"
            for name, (var, text) in ENV.items()]
    return "environment (secrets also from <NAME>_FILE):\n" + "\n".join(rows)


def with_env_help(parser: argparse.ArgumentParser, table: Callable[[], str] = help_table) -> argparse.ArgumentParser:
    """`--help` of `parser` ends with the variables `table()` lists (built only when the help is
    shown), the description still wrapped to the terminal."""
    def format_help() -> str:
        width = max(40, shutil.get_terminal_size().columns - 2)
        if parser.description and "\n" not in parser.description:
            parser.description = textwrap.fill(parser.description, width)
        try:
            parser.epilog = table()
        except ImportError:  # the cloud's table on a machine without the cloud extra
            parser.epilog = "environment: install the cloud extra to list it"
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        return argparse.ArgumentParser.format_help(parser)

    parser.format_help = format_help
    return parser
