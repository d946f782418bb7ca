"""POST /predict's bodies, turned into MNIST-like digits, uint8 (N, 28, 28).

Three ways to send images: a multipart upload (field `file`), the raw bytes of one image with an
image content type, or JSON (PredictRequest) with several images, each base64-encoded image bytes or
a 28x28 array of pixels. Image files are made MNIST-like exactly as `mnist predict` does
(data/images.py); a pixel array is taken as an MNIST digit already (light on black, 0-255).
What cannot be used is an HTTPException: 400 unreadable, 413 too large, 415 not an image type,
422 malformed.
"""

from __future__ import annotations

import base64
import binascii
from types import SimpleNamespace

import numpy as np
from fastapi import HTTPException, Request
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from mnist_cli.data.images import SIZE, ImageTooLarge, load_grayscale, preprocess
from mnist_cli.errors import UserError

Pixels = list[list[float]]


class PredictRequest(BaseModel):
    images: list[str | Pixels] = Field(
        min_length=1,
        description="each an image file's bytes in base64 (a data: URL too), or 28x28 pixels 0-255, light digit on black",
    )


# What the API documentation (/docs) shows for the request body: the route reads it itself.
REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": PredictRequest.model_json_schema()},
    },
}


class DigitReader:
    """Reads /predict's bodies with the limits and preprocessing of the config, taken out of it
    once (a config lookup per request costs more than it should on the server's hot path)."""

    def __init__(self, cfg: DictConfig):
        self.max_pixels = int(cfg.serve.max_pixels)
        self.max_images = int(cfg.serve.max_images)
        self.preprocess = SimpleNamespace(**OmegaConf.to_container(cfg.preprocess))

    async def __call__(self, request: Request) -> np.ndarray:
        return np.stack([digit for digit, _ in await self.read(request)])

    async def read(self, request: Request) -> list[tuple[np.ndarray, bytes | None]]:
        """Each image of the body: (the digit, the image file's bytes; None for a pixel array)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            async with request.form(max_files=1, max_fields=8) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise HTTPException(422, "a multipart upload needs the image in a field named `file`")
                return [self.from_bytes(await upload.read())]
        if kind.startswith("image/"):
            return [self.from_bytes(await request.body())]
        if kind == "application/json":
            try:
                body = PredictRequest.model_validate_json(await request.body())
            except ValidationError as e:
                raise HTTPException(
                    422, f'not a valid JSON request: {e.errors()[0]["msg"]}; send {{"images": [...]}}'
                ) from None
            if len(body.images) > self.max_images:
                raise HTTPException(
                    413, f"{len(body.images)} images in one request; at most serve.max_images={self.max_images}"
                )
            return [self.from_json(item) for item in body.images]
        raise HTTPException(
            415,
            f"content type {kind or 'none'} is not accepted: send an image (image/png, ...), multipart/form-data or application/json",
        )

    def from_bytes(self, data: bytes) -> tuple[np.ndarray, bytes]:
        try:
            return preprocess(load_grayscale(data, max_pixels=self.max_pixels), self.preprocess), data
        except ImageTooLarge as e:
            raise HTTPException(413, str(e)) from None
        except UserError as e:
            raise HTTPException(400, str(e)) from None

    def from_json(self, item: str | Pixels) -> tuple[np.ndarray, bytes | None]:
        if isinstance(item, str):
            encoded = item.partition(",")[2] if item.startswith("data:") else item
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise HTTPException(400, "an image string is not valid base64") from None
            return self.from_bytes(data)
        try:
            pixels = np.asarray(item, dtype=np.float32)
        except ValueError:  # rows of different lengths
            raise HTTPException(422, f"a pixel array must be {SIZE} rows of {SIZE} numbers") from None
        if pixels.shape != (SIZE, SIZE):
            raise HTTPException(
                422, f"a pixel array must be {SIZE}x{SIZE} numbers, not {'x'.join(map(str, pixels.shape))}"
            )
        if not ((pixels >= 0) & (pixels <= 255)).all():
            raise HTTPException(422, "a pixel array's numbers must be from 0 to 255 (light digit on black)")
        return pixels.round().astype(np.uint8), None
