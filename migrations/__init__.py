"""Alembic migrations; applied with `koding-iam db upgrade`."""
