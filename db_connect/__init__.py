"""db_connect: a PostgREST-style REST API over the warehouse's exposed Postgres schemas.

Run it with `uvicorn db_connect.app:app`; build test apps with `db_connect.app.create_app(settings)`;
manage API keys with `python -m db_connect keys create|list|revoke`.
"""
