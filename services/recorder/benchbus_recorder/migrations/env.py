"""Alembic's environment for the recorder: migrations run on the connection the store hands over (no ini file)."""
from alembic import context

connection = context.config.attributes["connection"]
# Batch mode: SQLite alters a table by copying it, which later revisions may need.
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
