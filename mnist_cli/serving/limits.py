"""What a request must satisfy before it reaches a route: a body of at most `max_bytes` (checked on
the declared Content-Length before anything is read, and counted as a body without one streams in),
and the bearer token when serve.token is set."""

from __future__ import annotations

import json
import secrets

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, without reading it whole."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def message(self) -> str:
        return f"the request body is over serve.max_bytes={self.max_bytes:,} bytes; send a smaller image"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body = json.dumps({"detail": self.message()}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # a body sent without Content-Length, or longer than it said
                raise HTTPException(413, self.message(), headers={"Connection": "close"})
            return message

        await self.app(scope, counted, send)


def token_check(token: str):
    """A FastAPI dependency: 401 unless the request carries `Authorization: Bearer <token>`. (async:
    FastAPI runs a plain function in its thread pool, a thread hand-off on every request.)"""

    async def check(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                401,
                "a bearer token is required: send Authorization: Bearer <serve.token>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
