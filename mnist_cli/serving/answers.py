"""What the routes of `mnist serve` answer: the response models (documented at /docs) and how a
batch of probabilities or attribution maps becomes one."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel

# What /predict and /explain answer to a request they cannot read (documented at /docs).
BAD_REQUESTS: dict[int | str, dict[str, Any]] = {
    400: {"description": "not a readable image"},
    401: {"description": "the bearer token is missing or wrong"},
    413: {"description": "body, image or image count over the limits"},
    415: {"description": "not an image, multipart or JSON body"},
    422: {"description": "malformed JSON or form"},
}


class Prediction(BaseModel):
    label: str  # the class's name (a digit, a letter, a garment, a folder's name)
    class_index: int  # its number: the model's output
    confidence: float
    probabilities: dict[str, float]
    input: list[list[int]] | None = None  # the 28x28 digit the model saw, with ?input=true


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class FeedbackEntry(BaseModel):
    id: str  # the entry's name in the store
    label: str  # the class it was corrected to
    answer: str  # what the model answered
    confidence: float  # the model's confidence in that answer
    file: str  # the digit as kept, relative to the store (<label>/<id>.png)


class Explanation(Prediction):
    map: list[list[float]]  # 28x28: each pixel's share in the answer's score (explain.method)
    map_png: str  # the map as a PNG data URL, 28x28 RGBA: red raised the score, blue lowered it


class ExplainResponse(BaseModel):
    explanations: list[Explanation]


def answer(classes: list[str], probabilities: np.ndarray, digits: np.ndarray, with_input: bool) -> PredictResponse:
    return PredictResponse(
        predictions=[
            Prediction(
                label=classes[best],
                class_index=best,
                confidence=round(p[best], 6),
                probabilities={name: round(q, 6) for name, q in zip(classes, p)},
                input=digit.tolist() if with_input else None,
            )
            for p, best, digit in zip(probabilities.tolist(), probabilities.argmax(1).tolist(), digits)
        ]
    )


def map_png(found: np.ndarray) -> str:
    """An attribution map as a 28x28 PNG data URL to lay over the digit: red where a pixel raised
    the answer's score, blue where it lowered it, opaque in proportion to its share."""
    scale = float(np.abs(found).max()) or 1.0
    rgba = np.zeros((*found.shape, 4), dtype=np.uint8)
    rgba[..., 0] = np.where(found > 0, 230, 40)
    rgba[..., 2] = np.where(found > 0, 40, 230)
    rgba[..., 3] = (255 * np.abs(found) / scale).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
