"""`mnist serve ckpt=...`: load the model (deploy/predictor.py), listen on serve.host:serve.port
(serving/server.py), print the URL, and serve the FastAPI app (serving/app.py) with uvicorn until
Ctrl-C or SIGTERM. Then uvicorn stops accepting, answers the requests in flight, and the summary
records the counts."""

from __future__ import annotations

import logging
from typing import Any

from mnist_cli.serving.server import listen, need_serve_extra, stop_signals, url_of
from mnist_cli.stages.context import StageContext

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    need_serve_extra()
    import uvicorn

    from mnist_cli.deploy.predictor import load_predictor
    from mnist_cli.serving.app import build_app
    from mnist_cli.serving.metrics import ServerMetrics

    sock = listen(ctx.cfg.serve.host, ctx.cfg.serve.port)  # first: a port in use is said before the model loads
    cfg, source = ctx.settle_with_source(onnx=True)
    served = load_predictor(cfg, source, threads=cfg.serve.threads)
    url = url_of(sock)
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
