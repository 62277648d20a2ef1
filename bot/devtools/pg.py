"""A throwaway PostgreSQL schema: one test (or benchmark) gets its own tables on a shared database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from sqlalchemy import create_engine, text

from bot.config import normalise_database_url


@contextmanager
def throwaway_schema(base_url: str, *, prefix: str = "t") -> Iterator[str]:
    """Create a schema, yield a URL whose connections use it (search_path), drop it with everything in it."""
    base = normalise_database_url(base_url)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
