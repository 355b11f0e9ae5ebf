"""Persistence: tables, the engine, migrations and the first-start bootstrap."""
