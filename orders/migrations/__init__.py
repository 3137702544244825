"""Alembic migrations of the order store, run programmatically by `orders.db`."""
