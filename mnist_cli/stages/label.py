"""`mnist label dir=<folder>`: read the images to label (a folder of unlabeled images with select's
guesses.csv, or an audit's suspects.csv), listen on label.host:label.port, print the URL and serve
the labeling page (labeling/app.py) until Ctrl-C or SIGTERM; every answer is carried out by the
LabelStore (labeling/store.py) as it comes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_cli.errors import UserError
from mnist_cli.serving.server import listen, need_serve_extra, stop_signals, url_of
from mnist_cli.stages.context import StageContext


def run(ctx: StageContext) -> dict[str, Any]:
    need_serve_extra()
    import uvicorn

    from mnist_cli.labeling.app import build_app
    from mnist_cli.labeling.store import GUESSES, LabelStore, read_csv_rows

    cfg = ctx.settle()
    folder = Path(cfg.dir).expanduser()
    classes = [str(c) for c in (cfg.label.classes or cfg.dataset.classes or [])]
    if len(classes) < 2:
        raise UserError("label needs the classes to choose from: give label.classes=[a,b,...] (or dataset.classes)")
    if cfg.suspects:
        suspects = Path(cfg.suspects).expanduser()
        if not suspects.is_file():
            raise UserError(f"suspects={suspects}: no such file; give the suspects.csv an `mnist audit` run wrote")
        store = LabelStore.suspects(folder, classes, read_csv_rows(suspects))
    else:
        into = Path(cfg.label.into).expanduser() if cfg.label.into else folder
        guesses = (
            {row["file"]: row["guess"] for row in read_csv_rows(folder / GUESSES)}
            if (folder / GUESSES).is_file()
            else {}
        )
        store = LabelStore.unlabeled(folder, into, classes, guesses)
    sock = listen(cfg.label.host, cfg.label.port)
    url = url_of(sock)
    server = uvicorn.Server(uvicorn.Config(build_app(store), log_config=None, log_level="warning", access_log=False))
    print(f"mnist label: {len(store.pending())} images from {folder} at {url}; Ctrl-C stops", flush=True)
    with stop_signals() as caught:
        server.run(sockets=[sock])
    answered = len(store.order) - len(store.pending())
    return {
        "dir": str(folder),
        "images": len(store.order),
        "answered": answered,
        "labels_csv": str(store.log),
        "stopped_by": caught[0] if caught else None,
    }
