"""The FastAPI app of `mnist serve`: its routes and the middleware around them (what each answers:
answers.py).

POST /predict   images -> per image: label (class name), class_index, confidence, probabilities (and the 28x28 input if asked)
POST /explain   the same images -> the same answers, and which pixels decided each (a 28x28 map and a PNG)
POST /feedback  one image and ?label=<its true class> -> kept in the feedback store (serving/feedback.py), 201
POST /reload    serve another checkpoint (?ckpt=..., else the one started with, resolved again), no request dropped
GET  /health    the process is up           GET /ready    the model is loaded, warmed and not stopping
GET  /info      the model and its accuracy  GET /metrics  Prometheus text format
GET  /          the page to draw digits on (page/, served from the package: works offline)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from omegaconf import DictConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from mnist_cli import __version__
from mnist_cli.deploy.predictor import Predictor
from mnist_cli.errors import UserError
from mnist_cli.serving.answers import (
    BAD_REQUESTS,
    ExplainResponse,
    Explanation,
    FeedbackEntry,
    PredictResponse,
    answer,
    map_png,
)
from mnist_cli.serving.batcher import Batcher, QueueFull
from mnist_cli.serving.feedback import FeedbackStore
from mnist_cli.serving.limits import BodyLimit, token_check
from mnist_cli.serving.metrics import CountRequests, ServerMetrics
from mnist_cli.serving.requests import REQUEST_BODY, DigitReader

log = logging.getLogger(__name__)
PAGE = resources.files("mnist_cli.serving") / "page"


def build_app(
    served: Predictor, cfg: DictConfig, metrics: ServerMetrics, load: Callable[[str | None], Predictor]
) -> FastAPI:
    """The app serving `served`; `load(ckpt)` gives the model POST /reload swaps in (ckpt None: the
    server's own ckpt=), or raises UserError saying why not."""
    knobs = cfg.serve
    read_digits = DigitReader(cfg)
    batcher = Batcher(served, knobs.max_batch, knobs.max_wait_ms, knobs.max_queue, metrics.batch_size.observe)

    async def warm_then_start() -> None:
        await asyncio.get_running_loop().run_in_executor(batcher.executor, warm_up, served, knobs.max_batch)
        batcher.start()
        app.state.warm = True

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        """Serving starts at once (/health answers); the model warms up meanwhile and /ready says
        when it is done. Requests that come earlier wait in the queue."""
        warming = asyncio.get_running_loop().create_task(warm_then_start())
        yield
        app.state.warm = False
        await asyncio.gather(warming, return_exceptions=True)
        await batcher.stop()

    app = FastAPIOffline(  # FastAPI whose /docs page is served from the package, not a CDN
        title="mnist serve",
        version=__version__,
        description="Handwritten digits in, labels out. POST images to /predict; the page at / draws them.",
        lifespan=lifespan,
    )
    app.state.warm = False  # the model has been run once at each batch size, and the batcher runs
    app.state.stopping = lambda: False  # `mnist serve` points it at uvicorn's graceful stop
    guarded = [] if knobs.token is None else [Depends(token_check(str(knobs.token)))]

    def images_route(path: str, response: type[BaseModel], status: int, meaning: str, answers: int = 200) -> Callable:
        """A POST route that reads images as /predict does (documented body, token, bad requests),
        answers `answers` when it succeeds, and may also answer `status` for the reason `meaning`."""
        return app.post(
            path,
            response_model=response,
            response_model_exclude_none=True,
            status_code=answers,
            dependencies=guarded,
            openapi_extra={"requestBody": REQUEST_BODY},
            responses={**BAD_REQUESTS, status: {"description": meaning}},
        )

    async def probabilities_of(digits: np.ndarray) -> tuple[np.ndarray, Predictor]:
        """The digits' probabilities, and the model that gave them (the one served when they ran)."""
        try:
            return await batcher(digits)
        except QueueFull as e:
            raise HTTPException(503, f"the server is busy: {e}; retry shortly", headers={"Retry-After": "1"}) from None
        finally:
            metrics.queue.set(batcher.queued())

    @images_route("/predict", PredictResponse, 503, "the queue is full; retry after the Retry-After seconds")
    async def predict(request: Request, show_input: bool = Query(False, alias="input")) -> PredictResponse:
        """Label one image (multipart field `file`, or the raw body with an image content type) or
        several (JSON: `{"images": [<base64 image> or <28x28 pixels>, ...]}`). `?input=true` adds
        the 28x28 digit the model saw to each answer."""
        with batcher.arrival():
            digits = await read_digits(request)
        probabilities, model = await probabilities_of(digits)
        return answer(model.classes, probabilities, digits, show_input)

    store = None if knobs.feedback is None else FeedbackStore(Path(knobs.feedback).expanduser())

    @images_route("/feedback", FeedbackEntry, 404, "corrections are off (serve.feedback=null)", answers=201)
    async def feedback(
        request: Request, label: str | None = Query(None, description="the image's true class")
    ) -> FeedbackEntry:
        """A correction: one image (as /predict takes it) is really `label`, one of the model's
        classes. The 28x28 digit the model saw goes into the feedback store's `<label>/` folder
        (what `mnist finetune dataset=folder dataset.root=<store>` reads), the upload and the
        model's answer beside it. 422: an unknown class or more than one image."""
        if store is None:
            raise HTTPException(404, "corrections are off on this server (serve.feedback=null)")
        classes = batcher.model.classes
        if label is None:
            raise HTTPException(422, f"say what the image is: ?label=<one of {', '.join(classes)}>")
        if label not in classes:
            raise HTTPException(422, f"label={label!r} is not one of the model's classes ({', '.join(classes)})")
        images = await read_digits.read(request)
        if len(images) != 1:
            raise HTTPException(422, f"{len(images)} images: a correction is one image and its label")
        [(digit, original)] = images
        probabilities, model = await probabilities_of(digit[None])
        if label not in model.classes:  # a model reloaded meanwhile knows other classes
            raise HTTPException(422, f"label={label!r} is not one of the model's classes ({', '.join(model.classes)})")
        row = await asyncio.get_running_loop().run_in_executor(
            None,
            store.add,
            digit,
            original,
            label,
            probabilities[0],
            model.classes,
            str(model.info.get("checkpoint", "")),
        )
        return FeedbackEntry(
            id=row["id"], label=label, answer=row["answer"], confidence=float(row["confidence"]), file=row["file"]
        )

    @images_route("/explain", ExplainResponse, 501, "an .onnx file or an ensemble is served: no gradients to follow")
    async def explain(request: Request, show_input: bool = Query(False, alias="input")) -> ExplainResponse:
        """What /predict answers, and per image which pixels decided it: an attribution map
        (explain.method, by Captum) as 28x28 numbers and as a PNG to lay over the digit."""
        served = batcher.model
        if served.explain is None:
            raise HTTPException(501, "explanations need one checkpoint's gradients; serve a run dir or .ckpt")
        digits = await read_digits(request)
        try:  # in the thread that runs the model, between batches
            probabilities, maps, _ = await asyncio.get_running_loop().run_in_executor(
                batcher.executor, served.explain, digits
            )
        except UserError as e:  # e.g. Captum is not installed, or gradcam of a vit
            raise HTTPException(501, str(e)) from None
        predicted = answer(served.classes, probabilities, digits, show_input).predictions
        return ExplainResponse(
            explanations=[
                Explanation(**p.model_dump(), map=np.round(m, 6).tolist(), map_png=map_png(m))
                for p, m in zip(predicted, maps)
            ]
        )

    reloading = asyncio.Lock()

    @app.post(
        "/reload",
        dependencies=guarded,
        responses={409: {"description": "not loaded (not promoted, unfinished, unreadable): the model served stays"}},
    )
    async def reload(
        ckpt: str | None = Query(None, description="a run dir, .ckpt or .onnx file; default: the server's own ckpt="),
    ) -> dict[str, str]:
        """Serve another model from the next batch on: `ckpt` (by default what the server was
        started with, resolved again: `latest` names the newest run). It is loaded and warmed up
        beside the one serving; no request is dropped, and each request's answers come from one
        model. A run whose gate did not promote it (finetune.max_forgetting) or that has not
        finished is refused: 409, and the model served stays."""
        loop = asyncio.get_running_loop()
        async with reloading:
            try:
                new = await loop.run_in_executor(None, load, ckpt)
                await loop.run_in_executor(None, warm_up, new, knobs.max_batch)
            except UserError as e:
                raise HTTPException(409, f"still serving {batcher.model.info.get('checkpoint')}: {e}") from None
            old = batcher.swap(new)
        log.info("reloaded: %s (was %s)", new.info.get("checkpoint"), old.info.get("checkpoint"))
        return {"checkpoint": str(new.info.get("checkpoint")), "previous": str(old.info.get("checkpoint"))}

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The process is up and answering."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"description": "warming up or shutting down"}})
    async def ready() -> JSONResponse:
        """The model is loaded and warmed, and the server is not shutting down."""
        ready = app.state.warm and not app.state.stopping()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/info", dependencies=guarded)
    async def info() -> dict[str, Any]:
        """The model served now, its checkpoint, classes and recorded test accuracy, and the batching knobs."""
        batching = {key: knobs[key] for key in ("max_batch", "max_wait_ms", "max_queue", "threads")}
        served = batcher.model
        return {**served.info, "classes": served.classes, "batching": batching, "version": __version__}

    @app.get("/metrics", dependencies=guarded, response_class=Response)
    async def prometheus() -> Response:
        """Prometheus text format: requests by route and status, latency, batch sizes, images served."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((PAGE / "index.html").read_text())

    app.mount("/page", StaticFiles(directory=str(PAGE)), name="page")
    app.add_middleware(BodyLimit, max_bytes=knobs.max_bytes)
    app.add_middleware(
        CountRequests,
        metrics=metrics,
        routes={"/predict", "/explain", "/feedback", "/reload", "/health", "/ready", "/info", "/metrics", "/"},
    )
    return app


def warm_up(served: Predictor, max_batch: int) -> None:
    """Run the model once at the largest and the smallest batch, so the first requests do not pay
    for lazy initialisation."""
    for size in (max_batch, 1):
        served.predict(np.zeros((size, 28, 28), dtype=np.uint8))
