"""`mnist serve ckpt=...`: load the model (deploy/predictor.py), listen on serve.host:serve.port
(serving/server.py), print the URL, and serve the FastAPI app (serving/app.py) with uvicorn until
Ctrl-C or SIGTERM. Then uvicorn stops accepting, answers the requests in flight, and the summary
records the counts. POST /reload loads another checkpoint as this command loaded the first (`loader`)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from mnist_cli.errors import UserError
from mnist_cli.serving.server import listen, need_serve_extra, stop_signals, url_of
from mnist_cli.stages.context import StageContext

if TYPE_CHECKING:
    from mnist_cli.deploy.predictor import Predictor

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    need_serve_extra()
    import uvicorn

    from mnist_cli.deploy.predictor import load_predictor
    from mnist_cli.serving.app import build_app
    from mnist_cli.serving.metrics import ServerMetrics

    sock = listen(ctx.cfg.serve.host, ctx.cfg.serve.port)  # first: a port in use is said before the model loads
    load = loader(ctx.cfg, ctx.overrides)
    cfg, source = ctx.settle_with_source(onnx=True)
    served = load_predictor(cfg, source, threads=cfg.serve.threads)
    url = url_of(sock)
    metrics = ServerMetrics()
    app = build_app(served, cfg, metrics, load)
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


def loader(composed: DictConfig, overrides: list[str]) -> Callable[[str | None], Predictor]:
    """What POST /reload loads: ckpt=`arg` (None: the command's own ckpt=, resolved again), read as
    `mnist serve` reads its ckpt= with the same command line; refused (UserError) when the run that
    wrote it has not finished or its gate did not promote it (evaluation/gate.py)."""
    from mnist_cli.deploy.predictor import load_predictor
    from mnist_cli.evaluation.gate import refusal
    from mnist_cli.training.source import Source, resolve_checkpoints

    def load(arg: str | None) -> Predictor:
        cfg = copy.deepcopy(composed)
        cfg.ckpt = composed.ckpt if arg is None else arg
        if str(cfg.ckpt).endswith(".onnx"):
            return load_predictor(cfg, None, threads=cfg.serve.threads)
        for path in resolve_checkpoints(cfg.ckpt, cfg.outputs_root):
            if why := refusal(path):
                raise UserError(why)
        source = Source.load(cfg.ckpt, cfg.outputs_root)
        for key, value in source.config(cfg, overrides).items():
            cfg[key] = value
        return load_predictor(cfg, source, threads=cfg.serve.threads)

    return load
