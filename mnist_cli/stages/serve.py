"""`mnist serve ckpt=...`: load the model (deploy/predictor.py), listen on serve.host:serve.port, print
the URL, and serve the FastAPI app (serving/app.py) with uvicorn until Ctrl-C or SIGTERM. Then
uvicorn stops accepting, answers the requests in flight, and the summary records the counts."""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig

from mnist_cli.errors import UserError
from mnist_cli.run_dir import RunDir
from mnist_cli.stages import task_overrides

log = logging.getLogger(__name__)


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


def run(cfg: DictConfig, run: RunDir, resume: dict[str, Any] | None) -> dict[str, Any]:
    need_serve_extra()
    import uvicorn

    from mnist_cli.deploy.predictor import load_predictor
    from mnist_cli.serving.app import build_app
    from mnist_cli.serving.metrics import ServerMetrics

    sock = listen(cfg.serve.host, cfg.serve.port)  # first: a port in use is said before the model loads
    served = load_predictor(cfg, task_overrides(), threads=cfg.serve.threads)
    run.write_config(cfg)
    host, port = sock.getsockname()[:2]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    metrics = ServerMetrics()
    app = build_app(served, cfg, metrics)
    config = uvicorn.Config(
        app,
        log_config=None,  # uvicorn's messages go to the run's log like the stage's own
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # the client's address is not used; no X-Forwarded-* header to read
        timeout_graceful_shutdown=cfg.serve.shutdown_timeout_s,
    )
    print(f"mnist serve: {served.info['checkpoint']} at {url} (API: {url}docs); Ctrl-C stops", flush=True)
    server = uvicorn.Server(config)
    app.state.stopping = lambda: server.should_exit  # /ready answers 503 while requests in flight finish
    with stop_signals() as caught:
        server.run(sockets=[sock])
    counts = metrics.counts()
    log.info(
        "stopped (%s): %d requests, %d images",
        ", ".join(caught) or "server ended",
        counts["requests"],
        counts["images"],
    )
    return {"checkpoint": served.info["checkpoint"], "url": url, **counts, "stopped_by": caught[0] if caught else None}
