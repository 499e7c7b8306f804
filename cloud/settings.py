"""The cloud's settings: every `PLI_*` variable the cloud reads, with its default, in one place
(pydantic-settings: typed, validated at the boundary, a clear error for a bad value).

Read afresh at each `settings()` call (cheap), so a process picks up what its environment says
and tests can set variables per test. Secrets come from the environment or, for each `SECRET`
field, from a file named by the same variable with `_FILE` appended (Docker/Compose secrets):
never from the repository or a command line. `pli cloud --help` lists them (`help_table`).
Signing keys of the TUF roles are read by cloud/registry/keys.py (`PLI_TUF_<ROLE>_KEY[_FILE]`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLI_", env_ignore_empty=True, extra="ignore", frozen=True)

    # Where things live
    database_url: str | None = Field(None, description="PostgreSQL (postgresql+psycopg://user@host:port/db); "
                                     "default: SQLite in the cloud folder")
    database_password: SecretStr | None = Field(None, description="PostgreSQL's password, when the URL has none "
                                                "(SECRET)")
    cloud_dir: Path = Field(Path("pli-cloud"), description="the cloud's folder: SQLite, registry, objects, jobs")
    object_store: str | None = Field(None, description="s3://bucket/prefix or a folder; default: <cloud dir>/objects")
    s3_endpoint_url: str | None = Field(None, description="an S3-compatible endpoint (MinIO, moto)")
    redis_url: str | None = Field(None, description="huey's queue on Redis; default: SQLite in the cloud folder")
    tuf_dir: Path | None = Field(None, description="the fleet's TUF repository; default: <cloud dir>/tuf")
    # API and pages
    token_cache_s: float = Field(5.0, ge=0, description="seconds a checked API token is trusted before the "
                                 "database is asked again")
    session_hours: float = Field(12.0, gt=0, description="an operator's login lasts this long")
    cookie_secure: bool = Field(False, description="send the session cookie over HTTPS only (behind TLS)")
    tile_url: str = Field("", description="the map's basemap: a tile URL template ({z}/{x}/{y}), e.g. the "
                          "utility's own tile server; none: a plain background that says so")
    tile_file: Path | None = Field(None, description="the map's basemap from a local MBTiles file, served by the "
                                   "cloud at /ui/tiles/{z}/{x}/{y} (used when PLI_TILE_URL is unset)")
    # Label Studio
    ls_url: str | None = Field(None, description="Label Studio's address")
    ls_token: SecretStr | None = Field(None, description="Label Studio's API token (SECRET)")
    ml_user: str = Field("label-studio", description="the user Label Studio's ML backend calls authenticate as")
    ml_password: SecretStr | None = Field(None, description="its password; unset: the ML backend is off (SECRET)")
    ls_webhook_secret: SecretStr | None = Field(None, description="the header Label Studio's webhook sends "
                                                "(SECRET)")
    preannotate_model: Path | None = Field(None, description="the ONNX model that pre-annotates; default: the "
                                           "registry's choice, else models/pli-default.onnx")
    # The broker (release announcements) and on-call notifications
    mqtt_host: str | None = Field(None, description="the broker releases are announced on; unset: no announcement")
    mqtt_port: int = Field(1883, ge=1, le=65535, description="its port")
    mqtt_user: str | None = Field(None, description="the cloud's broker user")
    mqtt_password: SecretStr | None = Field(None, description="its password (SECRET)")
    mqtt_tls_ca: Path | None = Field(None, description="CA file: connect with TLS")
    fleet: str = Field("fleet1", description="the fleet release announcements go to")
    oncall_topic: str | None = Field(None, description="high alerts' MQTT topic; default pli/<fleet>/oncall")
    oncall_webhooks: str = Field("", description="comma-separated webhook URLs for high alerts")
    oncall_webhook_secret: SecretStr | None = Field(None, description="HMAC key signing those webhooks (SECRET)")
    # The learning service
    learn_after: int = Field(100, description="a full learning run every this many new annotations (0: off)")
    refresh_every: int = Field(25, description="a quick refresh every this many new annotations (0: off)")
    learn_recipe: str = Field("{}", description="JSON changes to the learning run's Recipe (cloud/learning.py)")
    refresh_recipe: str = Field("{}", description="JSON changes to the quick refresh's recipe")
    learn_margin: float | None = Field(None, description="points an earlier campaign may lose (default: the "
                                       "service's MARGIN_POINTS)")
    learn_campaign: str | None = Field(None, description="the campaign annotations train; default: the newest")
    learn_replay: int | None = Field(None, ge=0, description="photos of earlier campaigns replayed in a full run "
                                     "(default: the service's REPLAY_PHOTOS, 200)")
    # Commands
    operator_password: SecretStr | None = Field(None, description="`pli cloud operator add`'s password, else "
                                                "--password-file, else a prompt (SECRET)")

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: dict) -> dict:
        """`PLI_X_FILE=/run/secrets/x` for a secret `PLI_X` (a file's content, stripped)."""
        for name, f in cls.model_fields.items():
            path = os.environ.get(f"PLI_{name.upper()}_FILE")
            if "(SECRET)" in (f.description or "") and path and name not in data:
                try:
                    data[name] = Path(path).read_text().strip()
                except OSError as exc:
                    raise ValueError(f"PLI_{name.upper()}_FILE={path}: {exc.strerror}") from None
        return data


def settings() -> Settings:
    """The settings the environment gives now (parsed once per distinct set of `PLI_*` values)."""
    return _parsed(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PLI_"))))


@lru_cache(maxsize=16)
def _parsed(_env: tuple[tuple[str, str], ...]) -> Settings:
    return Settings()


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def help_table() -> str:
    """The variables as `pli cloud --help` lists them: name, default, what it does."""
    rows = []
    for name, f in Settings.model_fields.items():
        default = "" if f.default in (None, "") else f" (default {f.default})"
        rows.append(f"  PLI_{name.upper()}{default}: {f.description}")
    return "environment (secrets also from PLI_<NAME>_FILE):\n" + "\n".join(rows)
