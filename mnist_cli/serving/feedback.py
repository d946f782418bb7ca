"""Corrections people send to `mnist serve` (POST /feedback, the page's "Wrong? It is:"), kept where
`mnist finetune dataset=folder dataset.root=<store>` reads them at once:

    <store>/<class>/<id>.png     the 28x28 digit the model saw, under its corrected class
    <store>/.originals/<id>.<ext> the image as it was uploaded (a pixel array has none)
    <store>/feedback.csv         one row per entry: id, time, label, answer, confidence,
                                 probabilities (JSON), checkpoint, file, original

The reader of dataset=folder leaves out names that start with a dot and files beside the class
folders, so the originals and the log never become training images. An entry is written under a
fresh id with exclusive creation: nothing a client sends names a path, and nothing is overwritten."""

from __future__ import annotations

import csv
import io
import json
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

LOG = "feedback.csv"
ORIGINALS = ".originals"
COLUMNS = ["id", "time", "label", "answer", "confidence", "probabilities", "checkpoint", "file", "original"]
# Pillow's names of the formats an upload may be in, and the suffix its original is kept under.
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


class FeedbackStore:
    def __init__(self, root: Path):
        self.root = root
        self.lock = threading.Lock()

    def add(
        self,
        digit: np.ndarray,
        original: bytes | None,
        label: str,
        probabilities: np.ndarray,
        classes: list[str],
        checkpoint: str,
    ) -> dict[str, str]:
        """Keep one correction: `digit` (28x28 uint8, what the model saw) is really `label` (one of
        `classes`); `probabilities`, the answer to it of the model `checkpoint` names; `original`,
        the bytes uploaded. Returns the entry's row of feedback.csv."""
        answer = int(probabilities.argmax())
        when = datetime.now(UTC)
        entry = f"{when:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"
        file = Path(label) / f"{entry}.png"
        with self.lock:
            write_new(self.root / file, png(digit))
            kept = ""
            if original is not None:
                kept = str(Path(ORIGINALS) / f"{entry}{suffix_of(original)}")
                write_new(self.root / kept, original)
            row = {
                "id": entry,
                "time": when.isoformat(timespec="seconds"),
                "label": label,
                "answer": classes[answer],
                "confidence": f"{float(probabilities[answer]):.6f}",
                "probabilities": json.dumps({c: round(float(p), 6) for c, p in zip(classes, probabilities)}),
                "checkpoint": checkpoint,
                "file": str(file),
                "original": kept,
            }
            log = self.root / LOG
            new = not log.exists()
            with open(log, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerow(row)
        return row


def write_new(path: Path, data: bytes) -> None:
    """Write `data` to a file that must not exist yet (its folder is made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as f:
        f.write(data)


def png(digit: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(digit.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def suffix_of(data: bytes) -> str:
    """The suffix of the image format `data` is in, as Pillow reads it ('.img' if none it names)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return SUFFIX.get(image.format or "", ".img")
    except Exception:  # it was read once already; only the suffix is at stake
        return ".img"
