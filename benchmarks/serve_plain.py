"""The plain server `mnist serve` is measured against (benchmarks/serve.py starts it), the usual
tutorial one: a FastAPI route, a plain `def` (so FastAPI runs it in its thread pool), one forward
pass per request, torch's default threads.

    python benchmarks/serve_plain.py --ckpt RUN --port N

It takes the same JSON body as `mnist serve` ({"images": [<base64 image>]}), makes the image
MNIST-like with the same function, and answers label and confidence (as serve_litserve.py does).
"""

from __future__ import annotations

import argparse
import base64

import torch
from omegaconf import OmegaConf
from pydantic import BaseModel

from mnist_cli.config.compose import compose_config
from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.images import load_grayscale, preprocess
from mnist_cli.training.source import Source


class Body(BaseModel):
    images: list[str]  # base64 image files; the first is labelled


def load(ckpt_arg: str):
    """The model, its input preparation, and how images are made MNIST-like."""
    source = Source.load(ckpt_arg, "outputs")
    model = source.model().eval()
    prep = BatchPrep(OmegaConf.create(source.checkpoints[0]["config"]["dataset"]))
    settings = compose_config().preprocess
    return model, prep, lambda encoded: preprocess(load_grayscale(base64.b64decode(encoded)), settings)


def plain(ckpt: str, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    model, prep, digit = load(ckpt)
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: Body) -> dict:
        x = torch.from_numpy(digit(body.images[0]))[None, None]
        with torch.no_grad():
            p = model(prep(x, train=False)).softmax(1)[0]
        return {"predictions": [{"label": str(int(p.argmax())), "confidence": float(p.max())}]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a run directory, a .ckpt file or latest")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    plain(args.ckpt, args.port)
