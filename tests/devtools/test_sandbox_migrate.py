"""The sandbox's quick ways to a migrated database build exactly the schema that running every migration builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from bot import db
from bot.devtools.sandbox import migrate


def schema_of(url: str) -> dict[str, Any]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            found = inspect(connection)
            tables = {}
            for table in sorted(found.get_table_names()):
                tables[table] = {
                    "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
                    "primary": found.get_pk_constraint(table)["constrained_columns"],
                    "indexes": sorted(
                        (i["name"], tuple(i["column_names"]), i["unique"]) for i in found.get_indexes(table)
                    ),
                    "unique": sorted(
                        (u["name"], tuple(u["column_names"])) for u in found.get_unique_constraints(table)
                    ),
                    "foreign": sorted(
                        (tuple(f["constrained_columns"]), f["referred_table"]) for f in found.get_foreign_keys(table)
                    ),
                }
        current, head = db.migration_state(engine)
    finally:
        engine.dispose()
    return {"tables": tables, "revision": current, "head": head}


def test_a_new_sqlite_file_copied_from_the_template_matches_a_migrated_one(tmp_path: Path) -> None:
    migrated, copied = f"sqlite:///{tmp_path / 'migrated.db'}", f"sqlite:///{tmp_path / 'copied.db'}"
    db.upgrade(migrated)
    migrate(copied)
    migrate(f"sqlite:///{tmp_path / 'second.db'}")  # the second copy comes from the same template
    expected = schema_of(migrated)
    assert expected["tables"] and expected["revision"] == expected["head"]
    assert schema_of(copied) == expected
    assert schema_of(f"sqlite:///{tmp_path / 'second.db'}") == expected


@pytest.mark.postgres
def test_an_empty_postgres_schema_given_the_offline_script_matches_a_migrated_one(postgres_available: str) -> None:
    from bot.devtools.pg import throwaway_schema

    with throwaway_schema(postgres_available) as migrated, throwaway_schema(postgres_available) as scripted:
        db.upgrade(migrated)
        migrate(scripted)
        expected = schema_of(migrated)
        assert expected["tables"] and expected["revision"] == expected["head"]
        assert schema_of(scripted) == expected
        migrate(scripted)  # a schema that already has tables is upgraded in place: nothing to do, no error
        assert schema_of(scripted) == expected


def _drift(url: str) -> list[Any]:
    """What autogenerate would write to make the migrated schema match the models (empty when they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from models import Base

    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()


def test_the_migrations_build_what_the_models_declare_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    db.upgrade(url)
    assert _drift(url) == []


@pytest.mark.postgres
def test_the_migrations_build_what_the_models_declare_on_postgres(postgres_available: str) -> None:
    from bot.devtools.pg import throwaway_schema

    with throwaway_schema(postgres_available) as url:
        db.upgrade(url)
        assert _drift(url) == []
