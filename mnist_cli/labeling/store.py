"""Where the labeling page's answers go: each label moves an image into the `<class>/` folder layout
that `dataset=folder` reads, and appends a row to labels.csv (time, file, label, previous, action);
an undo moves it back and appends its own row. Nothing is overwritten: a file that is gone
(labeled in another tab, removed meanwhile) or a name already taken in the class folder is refused
with a LabelConflict saying so, and nothing is written.

Two kinds of work:
- a folder of unlabeled images (`mnist select`'s to_label/): its top-level images, each with the
  model's guess from guesses.csv if there is one; a label moves `<dir>/x.png` to `<into>/<label>/x.png`;
- a list of suspects (`mnist audit`'s suspects.csv) in a folder layout: each image in its class
  folder, with the suggested label; a label moves it to the sibling folder `<label>/` (the same
  label confirms it and moves nothing).
"""

from __future__ import annotations

import csv
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mnist_cli.data.images import SUFFIXES
from mnist_cli.errors import UserError

LOG = "labels.csv"
GUESSES = "guesses.csv"  # beside the images to label: file, guess (written by `mnist select`)
COLUMNS = ["time", "file", "label", "previous", "action"]
SKIP = "skip"  # the answer for an image that is no digit (or not any class): it stays where it is


class LabelConflict(Exception):
    """An answer that cannot be carried out as asked; nothing was written."""


@dataclass
class Item:
    file: str  # where the image is now, relative to the store's folder
    guess: str  # the model's guess, or the audit's suggestion ("" if none)
    given: str | None  # the label it has (its class folder), or None when unlabeled
    done: str | None = None  # what this page answered: a label or SKIP (None: not yet)


@dataclass
class Answer:
    item: Item
    moved_from: str  # the file before the answer (relative to the folder)


class LabelStore:
    def __init__(self, folder: Path, into: Path, classes: list[str], items: list[Item]):
        self.folder, self.into, self.classes = folder, into, classes
        self.items = {item.file: item for item in items}
        self.order = [item.file for item in items]
        self.history: list[Answer] = []
        self.lock = threading.Lock()
        self.log = into / LOG

    @classmethod
    def unlabeled(cls, folder: Path, into: Path, classes: list[str], guesses: dict[str, str]) -> LabelStore:
        """The top-level images of `folder`, less those labels.csv says were skipped."""
        if not folder.is_dir():
            raise UserError(f"dir={folder}: no such folder; give the folder of images to label (select's to_label/)")
        skipped = skipped_files(into / LOG)
        files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        items = [Item(name, guesses.get(name, ""), None) for name in files if name not in skipped]
        return cls(folder, into, classes, items)

    @classmethod
    def suspects(cls, folder: Path, classes: list[str], rows: list[dict[str, str]]) -> LabelStore:
        """The suspects' files (rows of suspects.csv: file, suggested), each in its class folder under `folder`."""
        items = []
        for row in rows:
            if "file" not in row:
                raise UserError(
                    "these suspects are images of IDX files (split, index), not files: the page corrects the "
                    "labels of image files in class folders (an audit of dataset=folder)"
                )
            path = Path(row["file"])
            try:
                relative = path.resolve().relative_to(folder.resolve())
            except ValueError:
                raise UserError(
                    f"{path}: not under dir={folder}; give the folder the audit read (its dataset.root)"
                ) from None
            items.append(Item(str(relative), row.get("suggested", ""), path.parent.name))
        return cls(folder, folder, classes, items)

    def pending(self) -> list[Item]:
        return [self.items[name] for name in self.order if self.items[name].done is None]

    def target(self, item: Item, label: str) -> Path:
        if item.given is None:
            return self.into / label / Path(item.file).name
        return (self.folder / item.file).parent.parent / label / Path(item.file).name

    def answer(self, file: str, label: str) -> Item:
        """Label `file` (or skip it), as one move and one row of labels.csv."""
        if label != SKIP and label not in self.classes:
            raise LabelConflict(f"'{label}' is not a class: use one of {', '.join(self.classes)}, or {SKIP}")
        with self.lock:
            item = self.items.get(file)
            if item is None:
                raise LabelConflict(f"{file} is not one of the images on this page; reload it")
            if item.done is not None:
                raise LabelConflict(f"{file} was answered already ({item.done}), in another tab? Reload the page")
            source = self.folder / item.file
            if not source.is_file():
                raise LabelConflict(
                    f"{file} is no longer in {source.parent} (moved or removed meanwhile); nothing was written"
                )
            moved_from = item.file
            if label != SKIP and label != item.given:
                destination = self.target(item, label)
                if destination.exists():
                    raise LabelConflict(f"{destination} exists already; rename one of the two files, then reload")
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.rename(source, destination)
                item.file = str(destination.relative_to(self.folder)) if self.into == self.folder else str(destination)
            previous = item.given if item.given is not None else item.guess
            action = SKIP if label == SKIP else ("confirm" if label == item.given else "label")
            self.append(moved_from, label, previous, action)
            item.done = label
            self.history.append(Answer(item, moved_from))
            return item

    def undo(self) -> Item:
        """Take back the last answer: the image goes back where it was, and labels.csv says so."""
        with self.lock:
            if not self.history:
                raise LabelConflict("nothing to undo")
            last = self.history[-1]
            item = last.item
            now = self.folder / item.file  # (an absolute path when `into` is elsewhere)
            if item.file != last.moved_from:
                back = self.folder / last.moved_from
                if not now.is_file():
                    raise LabelConflict(f"{now} is gone (moved or removed meanwhile); nothing to move back")
                if back.exists():
                    raise LabelConflict(f"{back} exists again; nothing was moved")
                os.rename(now, back)
            self.history.pop()
            self.append(last.moved_from, "", item.done, "undo")
            item.file, item.done = last.moved_from, None
            return item

    def append(self, file: str, label: str, previous: str | None, action: str) -> None:
        new = not self.log.exists()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
            if new:
                writer.writeheader()
            writer.writerow(
                {
                    "time": datetime.now().isoformat(timespec="seconds"),
                    "file": file,
                    "label": label,
                    "previous": previous or "",
                    "action": action,
                }
            )
            f.flush()
            os.fsync(f.fileno())


def skipped_files(log: Path) -> set[str]:
    """The files labels.csv says were skipped (and not taken back)."""
    if not log.is_file():
        return set()
    skipped: set[str] = set()
    with open(log, newline="") as f:
        for row in csv.DictReader(f):
            if row["action"] == SKIP:
                skipped.add(row["file"])
            elif row["action"] == "undo" and row["previous"] == SKIP:
                skipped.discard(row["file"])
    return skipped


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
