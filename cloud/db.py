"""The one way to the cloud's database: engine and sessions, SQLite (WAL) or PostgreSQL.

`PLI_DATABASE_URL` names the database (`postgresql+psycopg://user@host:port/db` at scale); the
default is a SQLite file, `pli-cloud/pli.db` below the working folder (`PLI_CLOUD_DIR` moves it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from cloud.paths import cloud_dir
from cloud.settings import secret, settings


def check_named(create: bool = False) -> None:
    """Refuse to start a process that acknowledges alerts into a database nobody named: started
    from another folder, it would make `./pli-cloud/pli.db` there and the drones would delete what
    it acknowledged. Named: `PLI_DATABASE_URL`, or `PLI_CLOUD_DIR`, or a database already there."""
    if {"database_url", "cloud_dir"} & settings().model_fields_set or create:
        return
    default = Path("pli-cloud") / "pli.db"
    if not default.exists():
        raise ValueError(f"no database named and none at {default.resolve()}: set PLI_DATABASE_URL (or "
                         "PLI_CLOUD_DIR), or give --create to make one here")


def database_url(url: str | None = None) -> str:
    if url:
        return url
    if settings().database_url:
        return _with_password(settings().database_url, secret(settings().database_password))
    cloud_dir().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(cloud_dir() / 'pli.db').resolve()}"


def _with_password(url: str, password: str | None) -> str:
    """The URL with PLI_DATABASE_PASSWORD[_FILE] put in, where it names a server and no password:
    the password comes from a secret file, not from a URL in an env file or a process listing."""
    if not password or url.startswith("sqlite"):
        return url
    parsed = make_url(url)
    return url if parsed.password is not None else parsed.set(password=password).render_as_string(hide_password=False)


def make_engine(url: str | None = None, immediate: bool = False) -> Engine:
    """`immediate`: on SQLite, transactions take the write lock when they begin (BEGIN IMMEDIATE), so
    writers queue on the busy timeout instead of failing at once: a deferred transaction that read
    and then writes, after another writer committed, gets SQLITE_BUSY with no wait (WAL)."""
    url = database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy says BEGIN (below), not the driver
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers never wait on the ingest's writes
            cur.execute("PRAGMA synchronous=FULL")  # what is acknowledged survives a power cut
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


@lru_cache(maxsize=8)
def _factory(url: str, immediate: bool = False) -> sessionmaker[Session]:
    return sessionmaker(make_engine(url, immediate), expire_on_commit=False)


def sessions(url: str | None = None, immediate: bool = False) -> sessionmaker[Session]:
    """`immediate`: for writers that read first (the ingest), see `make_engine`."""
    return _factory(database_url(url), immediate)


@lru_cache(maxsize=8)
def _readers(url: str) -> sessionmaker[Session]:
    engine = sessions(url).kw["bind"]
    if engine.dialect.name == "postgresql":  # no BEGIN and ROLLBACK round trips around a read
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    return sessionmaker(engine, expire_on_commit=False)


def read_sessions(url: str | None = None) -> sessionmaker[Session]:
    """Sessions for requests that only read (the API's GETs): on PostgreSQL each statement runs on
    its own, without a transaction around them; on SQLite these are `sessions`' own."""
    return _readers(database_url(url))


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transaction: committed when the block ends, rolled back when it raises."""
    with sessions(url)() as session, session.begin():
        yield session


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic (`pli cloud db upgrade`)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    cfg.set_main_option("sqlalchemy.url", database_url(url).replace("%", "%%"))
    command.upgrade(cfg, revision)
