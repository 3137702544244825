"""Alembic environment: always online, on the connection orders.db hands over."""

from __future__ import annotations

from alembic import context

from orders.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run the migrations through orders.db.create_schema, which passes a connection"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
