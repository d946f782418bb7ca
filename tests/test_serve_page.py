"""The page of `mnist serve` in a real browser (Debian's chromium, driven by selenium through
chromium-driver; .ci/run installs both): draw a 1 and a 7 with the mouse, upload an image, and the
API documentation renders, all without the network. Needs a model that reads real digits, so it
runs where MNIST_CLI_REAL_DATA names the real MNIST files."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from conftest import CHROMIUM, DRIVER, REAL_DATA, serving

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.slow,
    pytest.mark.skipif(not REAL_DATA, reason="set MNIST_CLI_REAL_DATA to a folder with the real MNIST IDX files"),
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (apt-get)"),
]


@pytest.fixture(scope="module")
def cwd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("page")


@pytest.fixture(scope="module")
def server(real_run: Path, cwd: Path):
    with serving(f"ckpt={real_run}", cwd=cwd) as s:
        yield s


def draw(browser, strokes: list[list[tuple[int, int]]]) -> None:
    """Mouse strokes on the 280x280 canvas, through points given in canvas pixels."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = browser.find_element(By.ID, "canvas")
    for points in strokes:
        moves = ActionChains(browser, duration=10)
        moves.move_to_element_with_offset(canvas, points[0][0] - 140, points[0][1] - 140).click_and_hold()
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            for _ in range(6):  # several small moves, as a hand makes
                moves.move_by_offset(round((x1 - x0) / 6), round((y1 - y0) / 6))
        moves.release().perform()


def shown(browser, expected: str) -> str:
    """#prediction's text once it starts with `expected` (or what it shows after 15 s)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    text = lambda: browser.find_element(By.ID, "prediction").text
    try:
        WebDriverWait(browser, 15).until(lambda _: text().startswith(expected))
    except TimeoutException:
        pass
    return text()


def test_digits_drawn_with_the_mouse_are_read_as_drawn(browser, server) -> None:
    from selenium.webdriver.common.by import By

    browser.get(server.url)
    draw(browser, [[(140, 45), (140, 235)]])
    assert shown(browser, "1").startswith("1")
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert len(bars) == 10 and "top" in bars[1].get_attribute("class")

    browser.find_element(By.ID, "clear").click()
    assert shown(browser, "draw") == "draw a digit"
    draw(browser, [[(75, 60), (205, 60), (125, 235)]])
    assert shown(browser, "7").startswith("7")
    seen = browser.execute_script(
        "return Array.from(document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data)"
    )
    assert max(seen[0::4]) > 200  # what the model saw is shown, light on black


def test_a_wrong_answer_is_corrected_into_the_feedback_store(browser, server, cwd: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url)
    draw(browser, [[(140, 45), (140, 235)]])
    assert shown(browser, "1").startswith("1")
    # offered once the answer is for the whole stroke, never for a drawing still on its way
    WebDriverWait(browser, 15).until(lambda _: browser.find_element(By.ID, "correct").is_displayed())
    choices = browser.find_elements(By.CSS_SELECTOR, "#correct button")
    assert [b.text for b in choices] == [c for c in "023456789"]  # every class but the answer
    choices[6].click()  # "7"
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 15).until(lambda _: status.text.startswith("kept as 7"))
    [kept] = (cwd / "outputs" / "feedback" / "7").glob("*.png")
    assert kept.stem in status.text and not browser.find_element(By.ID, "correct").is_displayed()
    assert (cwd / "outputs" / "feedback" / ".originals" / kept.name).is_file()  # the drawing as sent


def test_an_uploaded_image_is_read(browser, server, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    photo = Image.new("RGB", (300, 240), "white")  # a 4 in blue ink on white paper
    ImageDraw.Draw(photo).line([(170, 30), (100, 150), (200, 150)], fill=(20, 30, 120), width=16)
    ImageDraw.Draw(photo).line([(175, 90), (175, 215)], fill=(20, 30, 120), width=16)
    photo.save(tmp_path / "four.jpg")
    browser.get(server.url)
    browser.find_element(By.ID, "upload").send_keys(str(tmp_path / "four.jpg"))
    assert shown(browser, "4").startswith("4")


def test_the_api_documentation_renders_offline(browser, server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "docs")
    WebDriverWait(browser, 15).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/predict", "/health", "/ready", "/info", "/metrics"} <= paths


def test_show_why_lays_the_map_over_the_digit(browser, server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url)
    draw(browser, [[(140, 45), (140, 235)]])
    assert shown(browser, "1").startswith("1")
    overlay = browser.find_element(By.ID, "why-map")
    assert not overlay.is_displayed()
    browser.find_element(By.ID, "why").click()
    WebDriverWait(browser, 15).until(lambda _: overlay.is_displayed())
    assert overlay.get_attribute("src").startswith("data:image/png;base64,")
    assert shown(browser, "1").startswith("1")  # the answer stays, the map comes with it
    browser.find_element(By.ID, "why").click()
    WebDriverWait(browser, 15).until(lambda _: not overlay.is_displayed())
