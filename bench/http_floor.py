"""The HTTP floor for bench/db_connect.py: an ASGI app that answers every request with one fixed JSON row.

Served by the same uvicorn as db_connect, it does no work at all, so its requests/s are the most any
Python API can answer on the machine: what is left after the HTTP server, the event loop and wrk.
"""

BODY = b'[{"id":4242,"meter":"meter-242","kwh":1060.50,"read_at":"2024-01-03T22:42:00+00:00"}]'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict, receive: object, send: object) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": BODY})  # type: ignore[operator]
