"""The migrations build exactly the tables cloud/models.py declares, on both backends (a column
added to a model without its Alembic step fails here, not in production)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from cloud.models import Base


def test_the_migrated_schema_is_the_models(db_url):
    engine = create_engine(db_url)
    with engine.connect() as conn:
        diff = []  # column changes come as lists of tuples, the rest as tuples
        for d in compare_metadata(MigrationContext.configure(conn), Base.metadata):
            diff += d if isinstance(d, list) else [d]
    engine.dispose()
    # PostgreSQL's GiST index on (point, time), made by migration 0002 only: no portable model form
    diff = [d for d in diff if not (d[0] == "remove_index"
                                    and d[1].name == "alerts_point_time")]
    if db_url.startswith("sqlite"):  # SQLite has one INTEGER type: BigInteger reads back as it
        diff = [d for d in diff if not (d[0] == "modify_type"
                                        and str(d[5]) == "INTEGER" and str(d[6]) == "BIGINT")]
    assert diff == []
