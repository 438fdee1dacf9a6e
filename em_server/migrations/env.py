"""Alembic environment: runs on the connection handed over by :func:`em_server.db.upgrade`."""

from alembic import context

conn = context.config.attributes["connection"]
context.configure(connection=conn, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
