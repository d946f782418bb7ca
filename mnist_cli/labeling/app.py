"""The FastAPI app of `mnist label`: the page, and the JSON routes behind it.

GET  /            the page (page/, served from the package: works offline)
GET  /items       the classes, and the images still to answer (file, guess, given label)
GET  /image?file= one of those images' bytes
POST /answer      {"file": ..., "label": <class or "skip">}: label (or skip) it; 409 when it cannot be done
POST /undo        take back the last answer; 409 when there is none or it cannot be done
Every route answers from the LabelStore (store.py), which holds a lock around each answer.
"""

from __future__ import annotations

import mimetypes
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from mnist_cli import __version__
from mnist_cli.labeling.store import SKIP, Item, LabelConflict, LabelStore

PAGE = resources.files("mnist_cli.labeling") / "page"


class AnswerRequest(BaseModel):
    file: str
    label: str


def shown(item: Item) -> dict[str, Any]:
    return {"file": item.file, "guess": item.guess, "given": item.given, "done": item.done}


def build_app(store: LabelStore) -> FastAPI:
    app = FastAPI(title="mnist label", version=__version__, docs_url=None, redoc_url=None)

    @app.get("/items")
    def items() -> dict[str, Any]:
        pending = store.pending()
        return {
            "classes": store.classes,
            "skip": SKIP,
            "items": [shown(item) for item in pending],
            "answered": len(store.order) - len(pending),
            "total": len(store.order),
            "labels_csv": str(store.log),
        }

    @app.get("/image")
    def image(file: str) -> FileResponse:
        item = store.items.get(file)
        if item is None or item.done is not None:  # only the pending images are served: no other path
            raise HTTPException(404, f"{file} is not an image waiting for a label here")
        path = store.folder / item.file
        if not path.is_file():
            raise HTTPException(410, f"{file} is no longer in {path.parent} (moved or removed meanwhile)")
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    @app.post("/answer")
    def answer(request: AnswerRequest) -> dict[str, Any]:
        try:
            return shown(store.answer(request.file, request.label))
        except LabelConflict as e:
            raise HTTPException(409, str(e)) from None

    @app.post("/undo")
    def undo() -> dict[str, Any]:
        try:
            return shown(store.undo())
        except LabelConflict as e:
            raise HTTPException(409, str(e)) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((PAGE / "label.html").read_text())

    app.mount("/page", StaticFiles(directory=str(PAGE)), name="page")
    return app
