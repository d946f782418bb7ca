"""`mnist label`: every answer is one move into the <class>/ layout and one row of labels.csv, undo
takes it back, and what cannot be done (the file gone, answered in another tab, a name taken) is
refused with nothing written; the page in Chromium, driven by the keyboard."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from mnist_cli.errors import UserError
from mnist_cli.labeling.store import LabelConflict, LabelStore

from conftest import CHROMIUM, DRIVER, make_images, serving

DIGITS = [str(d) for d in range(10)]


def write_images(folder: Path, n: int, prefix: str = "img") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, image in enumerate(make_images(torch.arange(n) % 10, seed=4)):
        names.append(f"{prefix}{i}.png")
        Image.fromarray(image.numpy()).save(folder / names[-1])
    return names


def log_rows(folder: Path) -> list[tuple[str, str, str, str]]:
    with open(folder / "labels.csv", newline="") as f:
        return [(r["file"], r["label"], r["previous"], r["action"]) for r in csv.DictReader(f)]


def test_labels_move_images_into_class_folders_and_undo_moves_them_back(tmp_path: Path) -> None:
    write_images(tmp_path, 3)
    store = LabelStore.unlabeled(tmp_path, tmp_path, DIGITS, {"img0.png": "4"})
    store.answer("img0.png", "4")
    store.answer("img1.png", "skip")
    store.answer("img2.png", "7")
    store.undo()
    assert (tmp_path / "4" / "img0.png").is_file() and (tmp_path / "img2.png").is_file()
    assert (tmp_path / "img1.png").is_file()  # a skipped image stays where it is
    assert not (tmp_path / "7").exists() or not any((tmp_path / "7").iterdir())
    assert log_rows(tmp_path) == [
        ("img0.png", "4", "4", "label"),
        ("img1.png", "skip", "", "skip"),
        ("img2.png", "7", "", "label"),
        ("img2.png", "", "7", "undo"),
    ]
    assert [item.file for item in store.pending()] == ["img2.png"]
    # a new page on the same folder: the labeled image is gone from the top, the skipped one is remembered
    again = LabelStore.unlabeled(tmp_path, tmp_path, DIGITS, {})
    assert [item.file for item in again.pending()] == ["img2.png"]


def test_what_cannot_be_done_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    write_images(tmp_path, 3)
    store = LabelStore.unlabeled(tmp_path, tmp_path / "labeled", DIGITS, {})
    other_tab = LabelStore.unlabeled(tmp_path, tmp_path / "labeled", DIGITS, {})
    store.answer("img0.png", "1")
    with pytest.raises(LabelConflict, match="answered already"):
        store.answer("img0.png", "2")
    with pytest.raises(LabelConflict, match="no longer in"):  # the other tab's page still shows it
        other_tab.answer("img0.png", "2")
    (tmp_path / "img1.png").unlink()  # removed meanwhile
    with pytest.raises(LabelConflict, match="no longer in"):
        store.answer("img1.png", "3")
    (tmp_path / "labeled" / "5").mkdir(parents=True)
    (tmp_path / "labeled" / "5" / "img2.png").write_bytes(b"an older image of the same name")
    with pytest.raises(LabelConflict, match="exists already"):
        store.answer("img2.png", "5")
    with pytest.raises(LabelConflict, match="not a class"):
        store.answer("img2.png", "x")
    assert (tmp_path / "labeled" / "5" / "img2.png").read_bytes() == b"an older image of the same name"
    assert (tmp_path / "img2.png").is_file()
    assert log_rows(tmp_path / "labeled") == [("img0.png", "1", "", "label")]


def test_suspects_are_corrected_or_confirmed_in_place(tmp_path: Path) -> None:
    for label in ("3", "5"):
        write_images(tmp_path / label, 2, prefix=f"c{label}_")
    rows = [
        {"file": str(tmp_path / "3" / "c3_0.png"), "suggested": "5"},
        {"file": str(tmp_path / "5" / "c5_1.png"), "suggested": "3"},
    ]
    store = LabelStore.suspects(tmp_path, DIGITS, rows)
    assert [(item.given, item.guess) for item in store.pending()] == [("3", "5"), ("5", "3")]
    store.answer("3/c3_0.png", "5")  # corrected: moved to the sibling folder
    store.answer("5/c5_1.png", "5")  # confirmed: stays
    assert (tmp_path / "5" / "c3_0.png").is_file() and not (tmp_path / "3" / "c3_0.png").exists()
    assert (tmp_path / "5" / "c5_1.png").is_file()
    assert log_rows(tmp_path) == [("3/c3_0.png", "5", "3", "label"), ("5/c5_1.png", "5", "5", "confirm")]
    with pytest.raises(UserError, match="images of IDX files"):  # an audit of MNIST's own files: no files to move
        LabelStore.suspects(tmp_path, DIGITS, [{"split": "test", "index": "7", "suggested": "1"}])


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (apt-get)")
def test_the_page_labels_with_the_keyboard_and_undoes(browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    folder = tmp_path / "to_label"
    write_images(folder, 4)
    (folder / "guesses.csv").write_text(
        "file,guess,score\nimg0.png,0,0.9\nimg1.png,6,0.8\nimg2.png,2,0.7\nimg3.png,3,0.6\n"
    )
    with serving(f"dir={folder}", cwd=tmp_path, stage="label") as server:
        browser.get(server.url)
        shown_file = lambda: browser.find_element(By.ID, "image").get_attribute("data-file")
        body = browser.find_element(By.TAG_NAME, "body")

        def press(key: str, then: str) -> None:
            body.send_keys(key)
            WebDriverWait(browser, 10).until(lambda _: shown_file() == then)

        WebDriverWait(browser, 10).until(lambda _: shown_file() == "img0.png")
        preselected = browser.find_element(By.CSS_SELECTOR, "#classes button.preselected")
        assert preselected.get_attribute("data-label") == "0"
        natural = browser.execute_script("return document.getElementById('image').naturalWidth")
        assert natural == 28 and browser.find_element(By.ID, "image").size["width"] >= 280  # big enough to read
        press("9", then="img1.png")  # the guess was 0: overruled
        press("\ue007", then="img2.png")  # Enter: the guess, 6
        press("2", then="img3.png")
        press("\ue003", then="img2.png")  # Backspace: img2 is back
        assert "undone: img2.png" in browser.find_element(By.ID, "message").text

    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png")) == [
        "6/img1.png",
        "9/img0.png",
        "img2.png",
        "img3.png",
    ]
    assert log_rows(folder) == [
        ("img0.png", "9", "0", "label"),
        ("img1.png", "6", "6", "label"),
        ("img2.png", "2", "2", "label"),
        ("img2.png", "", "2", "undo"),
    ]
