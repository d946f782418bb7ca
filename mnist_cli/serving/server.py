"""The process around the app: the serve extra's packages, the listening socket, and Ctrl-C/SIGTERM
while uvicorn serves."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from mnist_cli.errors import UserError


def need_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401  (/docs without a CDN)
        import prometheus_client  # noqa: F401
        import python_multipart  # noqa: F401  (uploads)
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UserError(
            f"mnist serve needs the serve extra ({e.name} is missing): pip install 'mnist-cli[serve]'"
        ) from None


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one). Made with the protocol number
    getaddrinfo gives (IPPROTO_TCP): asyncio sets TCP_NODELAY only on such sockets, and without it
    every response waits ~40 ms for the client's delayed ACK."""
    try:
        family, kind, proto, _, _ = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise UserError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); choose another serve.port=... (0: any free port) or serve.host=..."
        ) from None
    sock.listen(2048)
    return sock


def url_of(sock: socket.socket) -> str:
    """The http URL a listening socket answers at."""
    host, port = sock.getsockname()[:2]
    return f"http://{host if ':' not in host else f'[{host}]'}:{port}/"


@contextmanager
def stop_signals() -> Iterator[list[str]]:
    """While serving, Ctrl-C and SIGTERM are uvicorn's (it stops gracefully, then raises the signal
    again); here they are only noted, so a graceful stop ends the command with exit code 0."""
    caught: list[str] = []
    before = {
        sig: signal.signal(sig, lambda signum, frame: caught.append(signal.Signals(signum).name))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield caught
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
