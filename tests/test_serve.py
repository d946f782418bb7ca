"""`mnist serve` as a real process on 127.0.0.1: every endpoint, every bad input, concurrent clients
answered right and batched, flat memory, a graceful SIGTERM; and the pieces (the batcher, the
ONNX backend, the port check) directly."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from omegaconf import OmegaConf
from PIL import Image

from mnist_cli.config.compose import compose_config
from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.datasets import load_split
from mnist_cli.data.images import load_grayscale, preprocess
from mnist_cli.deploy.predictor import Predictor, load_predictor
from mnist_cli.errors import UserError
from mnist_cli.serving.app import build_app
from mnist_cli.serving.batcher import Batcher, QueueFull
from mnist_cli.serving.metrics import ServerMetrics
from mnist_cli.serving.server import listen, need_serve_extra
from mnist_cli.training.checkpoint import load_checkpoint
from mnist_cli.training.runtime import autocast, pick_precision
from mnist_cli.training.source import model_from_checkpoint

from conftest import BAD_INPUTS, FAST, mnist, run_dirs, serving, summary

pytestmark = pytest.mark.slow
TOKEN = "s3cret"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A run directory with a CNN trained on the tiny data."""
    cwd = tmp_path_factory.mktemp("serve")
    done = mnist("pretrain", f"dataset.root={tiny_data}", *FAST, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return run_dirs(cwd, "pretrain")[0]


@pytest.fixture(scope="module")
def server(trained: Path):
    """The server every test shares, with a small body limit."""
    with serving(
        f"ckpt={trained}", "serve.max_bytes=200000", "serve.max_images=8", cwd=trained.parent.parent.parent
    ) as s:
        yield s


@pytest.fixture(scope="module")
def digits(tiny_data: Path) -> np.ndarray:
    """Test images of the tiny data set, uint8 (N, 28, 28)."""
    cfg = compose_config(f"dataset.root={tiny_data}", "dataset.download=false")
    return load_split(cfg.dataset, "test").images[:20].reshape(-1, 28, 28).numpy()


def png(pixels: np.ndarray, paper: bool = False) -> bytes:
    """PNG bytes of a digit; `paper`: dark ink on white, as a photo or drawing would be."""
    buffer = io.BytesIO()
    Image.fromarray(255 - pixels if paper else pixels).resize((112, 112)).save(buffer, format="PNG")
    return buffer.getvalue()


def reference(run: Path, digits: np.ndarray) -> np.ndarray:
    """The checkpoint's class probabilities for MNIST-like digits (with the temperature its training
    fitted), computed here as the server should."""
    ckpt = load_checkpoint(run / "checkpoints" / "best.ckpt")
    model = model_from_checkpoint(ckpt).eval()
    prep = BatchPrep(OmegaConf.create(ckpt["config"]["dataset"]))
    with torch.no_grad(), autocast(torch.device("cpu"), pick_precision("auto", torch.device("cpu"))):
        logits = model(prep(torch.from_numpy(digits)[:, None], train=False))
    return (logits.float() / ckpt["temperature"]).softmax(1).numpy()  # calibrated, as served


def predictions(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_every_endpoint_answers(server, trained: Path) -> None:
    assert httpx.get(server.url + "health").json() == {"status": "ok"}
    assert httpx.get(server.url + "ready").json() == {"ready": True}
    info = httpx.get(server.url + "info").json()
    assert info["checkpoint"] == str(trained / "checkpoints" / "best.ckpt")
    assert info["classes"] == [str(c) for c in range(10)] and info["model"] == "cnn"
    assert info["test_acc"] == summary(trained)["test_acc"]
    metrics = httpx.get(server.url + "metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'mnist_requests_total{route="/info",status="200"} 1.0' in metrics.text
    spec = httpx.get(server.url + "openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/png", "application/json"} <= body.keys()
    for path in ("docs", ""):  # the API page and the drawing page, with what they load, from the package
        page = httpx.get(server.url + path)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        for asset in [a for a in page.text.split('"') if a.endswith((".js", ".css"))]:
            assert not asset.startswith("http"), f"{asset}: the page must work offline"
            assert httpx.get(server.url + asset.lstrip("/")).status_code == 200, asset
    assert 'id="canvas"' in page.text and 'id="prediction"' in page.text


def test_every_way_of_sending_gives_the_checkpoint_answer(server, trained: Path, digits: np.ndarray) -> None:
    photo = png(digits[3], paper=True)  # dark on light, 112x112: made MNIST-like by the server
    upload = predictions(httpx.post(server.url + "predict?input=true", files={"file": ("d.png", photo, "image/png")}))
    raw = predictions(
        httpx.post(server.url + "predict?input=true", content=photo, headers={"content-type": "image/png"})
    )
    encoded = base64.b64encode(photo).decode()
    as_json = predictions(
        httpx.post(server.url + "predict?input=true", json={"images": [encoded, "data:image/png;base64," + encoded]})
    )
    assert upload == raw == as_json[:1] == as_json[1:]
    # The same preprocessing as `mnist predict`: one function.
    cfg = compose_config()
    assert np.array_equal(np.array(upload[0]["input"]), preprocess(load_grayscale(photo), cfg.preprocess))
    assert (
        "input"
        not in predictions(httpx.post(server.url + "predict", content=photo, headers={"content-type": "image/png"}))[0]
    )

    # 28x28 pixel arrays are MNIST digits already: their answers are the checkpoint's own.
    answers = predictions(httpx.post(server.url + "predict", json={"images": digits[:8].tolist()}))
    expected = reference(trained, digits[:8])
    for answer, p in zip(answers, expected):
        assert answer["label"] == str(p.argmax())
        assert answer["confidence"] == pytest.approx(p.max(), abs=1e-2)
        assert list(answer["probabilities"]) == [str(c) for c in range(10)]
        assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def test_bad_input_gets_a_clear_status_and_the_server_goes_on(server, digits: np.ndarray) -> None:
    url = server.url + "predict"
    image = {"content-type": "image/png"}
    truncated = png(digits[0])[:60]
    cases = [
        ("a text file as an image", dict(content=b"hello", headers=image), 400, "not a readable image"),
        ("a truncated PNG", dict(content=truncated, headers=image), 400, "not a readable image"),
        ("a blank image", dict(content=png(np.zeros((28, 28), np.uint8)), headers=image), 400, "blank"),
        ("a text body", dict(content=b"7", headers={"content-type": "text/plain"}), 415, "not accepted"),
        ("no content type", dict(content=png(digits[0])), 415, "not accepted"),
        ("an upload without a file field", dict(files={"image": ("d.png", png(digits[0]))}), 422, "`file`"),
        ("malformed JSON", dict(content=b'{"images": [', headers={"content-type": "application/json"}), 422, "JSON"),
        ("JSON without images", dict(json={"pictures": []}), 422, "JSON"),
        ("a 27x28 pixel array", dict(json={"images": [digits[0][:27].tolist()]}), 422, "28x28"),
        ("pixels above 255", dict(json={"images": [(digits[0].astype(int) + 300).tolist()]}), 422, "0 to 255"),
        ("ragged pixel rows", dict(json={"images": [[[0] * 28] * 27 + [[0] * 5]]}), 422, "28 rows"),
        ("bad base64", dict(json={"images": ["not base64!"]}), 400, "base64"),
        ("9 images (max_images=8)", dict(json={"images": [digits[0].tolist()] * 9}), 413, "max_images"),
        ("a body over max_bytes", dict(content=b"\0" * 200_001, headers=image), 413, "max_bytes"),
        ("a 5000x5000 image", dict(content=huge_png(), headers=image), 413, "over the limit"),
    ]
    for tried, request, status, said in cases:
        response = httpx.post(url, **request)
        assert response.status_code == status, (tried, response.text)
        assert said in response.json()["detail"], (tried, response.text)
        BAD_INPUTS.append((f"mnist serve: POST /predict with {tried}", f"{status} {response.json()['detail']}"))
    assert predictions(httpx.post(url, content=png(digits[0]), headers=image))  # still serving


def huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buffer, format="PNG")  # 25 M pixels in a few kB
    return buffer.getvalue()


def test_an_oversized_body_is_refused_before_it_is_read(server) -> None:
    # Content-Length says 1 GB and 10 bytes came: the whole answer comes at once, and the server
    # closes the connection without reading more.
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000000\r\n\r\n"
    host, port = server.url.removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + b"0123456789")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b"max_bytes" in reply
    # Without a Content-Length (chunked), counting stops the body at the limit.
    chunked = httpx.post(
        server.url + "predict", content=iter([b"\0" * 65536] * 8), headers={"content-type": "image/png"}
    )
    assert chunked.status_code == 413


def test_feedback_keeps_exactly_what_was_sent_and_refuses_the_rest(server, trained: Path, digits: np.ndarray) -> None:
    import csv

    store = trained.parent.parent.parent / "outputs" / "feedback"
    photo = png(digits[5], paper=True)
    kept = httpx.post(server.url + "feedback?label=3", files={"file": ("../../x.png", photo, "image/png")})
    assert kept.status_code == 201, kept.text
    entry = kept.json()
    seen = predictions(
        httpx.post(server.url + "predict?input=true", content=photo, headers={"content-type": "image/png"})
    )
    assert entry["file"] == f"3/{entry['id']}.png" and entry["answer"] == seen[0]["label"]
    assert np.array_equal(np.asarray(Image.open(store / entry["file"])), np.array(seen[0]["input"], dtype=np.uint8))
    assert (store / ".originals" / f"{entry['id']}.png").read_bytes() == photo
    pixels = httpx.post(server.url + "feedback?label=8", json={"images": [digits[6].tolist()]})
    assert pixels.status_code == 201, pixels.text
    assert np.array_equal(np.asarray(Image.open(store / pixels.json()["file"])), digits[6])
    rows = list(csv.DictReader(open(store / "feedback.csv")))
    assert [(r["id"], r["label"], r["file"]) for r in rows] == [
        (entry["id"], "3", entry["file"]),
        (pixels.json()["id"], "8", pixels.json()["file"]),
    ]
    assert rows[0]["original"] == f".originals/{entry['id']}.png" and rows[1]["original"] == ""
    assert rows[0]["checkpoint"] == str(trained / "checkpoints" / "best.ckpt")
    assert json.loads(rows[0]["probabilities"])[rows[0]["answer"]] == pytest.approx(float(rows[0]["confidence"]))
    url, image = server.url + "feedback", {"content-type": "image/png"}
    cases = [
        ("an unknown class", "?label=x", dict(content=photo, headers=image), 422, "not one of the model's classes"),
        ("a path as the class", "?label=../3", dict(content=photo, headers=image), 422, "not one of"),
        ("no label", "", dict(content=photo, headers=image), 422, "say what the image is: ?label="),
        ("two images", "?label=1", dict(json={"images": [digits[0].tolist()] * 2}), 422, "one image"),
        ("a body over max_bytes", "?label=1", dict(content=b"\0" * 200_001, headers=image), 413, "max_bytes"),
        ("no image", "?label=1", dict(content=b"hello", headers=image), 400, "not a readable image"),
    ]
    for tried, query, request, status, said in cases:
        response = httpx.post(url + query, **request)
        assert response.status_code == status, (tried, response.text)
        assert said in response.json()["detail"], (tried, response.text)
        BAD_INPUTS.append((f"mnist serve: POST /feedback with {tried}", f"{status} {response.json()['detail']}"))
    written = sorted(str(f.relative_to(store)) for f in store.rglob("*") if f.is_file())
    assert written == sorted([entry["file"], pixels.json()["file"], rows[0]["original"], "feedback.csv"])
    assert not (trained.parent.parent.parent / "x.png").exists()


def test_token_and_a_full_queue(trained: Path, digits: np.ndarray) -> None:
    with serving(f"ckpt={trained}", f"serve.token={TOKEN}", "serve.max_queue=2", cwd=trained.parent.parent.parent) as s:
        body = {"images": digits[:2].tolist()}
        for path in ("predict", "feedback?label=1", "reload", "info", "metrics"):
            denied = httpx.request("GET" if path in ("info", "metrics") else "POST", s.url + path, json=body)
            assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer", path
        wrong = httpx.post(s.url + "predict", json=body, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert httpx.get(s.url + "health").status_code == 200  # liveness and readiness stay open
        auth = {"authorization": f"Bearer {TOKEN}"}
        assert len(predictions(httpx.post(s.url + "predict", json=body, headers=auth))) == 2
        full = httpx.post(s.url + "predict", json={"images": digits[:3].tolist()}, headers=auth)
        assert full.status_code == 503 and full.headers["retry-after"] == "1" and "max_queue" in full.json()["detail"]
        BAD_INPUTS.append(("mnist serve: POST /predict without the token", denied.json()["detail"]))
        BAD_INPUTS.append(("mnist serve: 3 images with serve.max_queue=2", full.json()["detail"]))


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def test_32_clients_are_answered_right_in_batches_and_memory_stays_flat(server, digits: np.ndarray) -> None:
    images = [png(d) for d in digits[:10]]
    expected = [
        predictions(httpx.post(server.url + "predict", content=i, headers={"content-type": "image/png"}))[0]["label"]
        for i in images
    ]

    def client(k: int) -> list[bool]:
        with httpx.Client(base_url=server.url) as http:
            right = []
            for n in range(50):
                reply = http.post("predict", content=images[(k + n) % 10], headers={"content-type": "image/png"})
                right.append(
                    reply.status_code == 200 and reply.json()["predictions"][0]["label"] == expected[(k + n) % 10]
                )
            return right

    def load() -> list[bool]:
        with ThreadPoolExecutor(32) as pool:
            return [ok for answers in pool.map(client, range(32)) for ok in answers]

    # The first rounds fill what is filled once (allocator pools, a kernel cache per batch size);
    # after that, 1,600 more requests must not grow the server.
    rounds = [load(), load()]
    before = rss_kib(server.process.pid)
    rounds.append(load())
    after = rss_kib(server.process.pid)
    assert all(len(answers) == 32 * 50 and all(answers) for answers in rounds)
    assert after - before < 4096, f"the server grew by {after - before} KiB over 1,600 requests"

    text = httpx.get(server.url + "metrics").text
    value = lambda name: float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name)))
    batches, singles = value("mnist_batch_size_count"), value('mnist_batch_size_bucket{le="1.0"}')
    assert singles < batches, "under 32 concurrent clients some forward passes should take more than one image"
    assert value('mnist_requests_total{route="/predict",status="200"}') >= 3 * 1600


def test_reload_under_32_clients_drops_nothing_and_never_mixes_two_models(
    trained: Path, tiny_data: Path, tmp_path: Path
) -> None:
    """32 clients send three images a request while the model is swapped back and forth: every
    request is answered, and each answer's probabilities are all the old model's or all the new
    one's. A run its gate did not promote is refused, and the model served stays."""
    done = mnist("pretrain", f"dataset.root={tiny_data}", *FAST, "trainer.seed=1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [other] = run_dirs(tmp_path, "pretrain")
    noise = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)  # what the two answer apart
    expected = {run: reference(run, noise) for run in (trained, other)}
    assert np.abs(expected[trained] - expected[other]).max() > 0.1
    with serving(f"ckpt={trained}", cwd=trained.parent.parent.parent) as s:
        stop = threading.Event()
        body = {"images": noise.tolist()}

        def client(k: int) -> list[str]:
            seen = []
            with httpx.Client(base_url=s.url, timeout=30) as http:
                while not stop.is_set():
                    reply = http.post("predict", json=body)
                    if reply.status_code != 200:
                        seen.append(f"status {reply.status_code}")
                        continue
                    got = np.array([[p["probabilities"][c] for c in map(str, range(10))] for p in predictions(reply)])
                    seen.append(
                        next((run.name for run, p in expected.items() if np.allclose(got, p, atol=2e-2)), "mixed")
                    )
            return seen

        with ThreadPoolExecutor(32) as pool:
            clients = [pool.submit(client, k) for k in range(32)]
            for target in (other, trained, other):
                time.sleep(0.5)
                reloaded = httpx.post(s.url + "reload", params={"ckpt": str(target)}, timeout=60)
                assert reloaded.status_code == 200, reloaded.text
                assert reloaded.json()["checkpoint"] == str(target / "checkpoints" / "best.ckpt")
            time.sleep(0.5)
            stop.set()
            answers = [a for c in clients for a in c.result()]
        assert len(answers) > 32 * 5 and set(answers) == {trained.name, other.name}, set(answers) - {
            trained.name,
            other.name,
        }
        assert httpx.get(s.url + "info").json()["checkpoint"] == str(other / "checkpoints" / "best.ckpt")
        # a run the gate did not promote
        refused = tmp_path / "refused"
        shutil.copytree(trained, refused)
        record = summary(refused) | {"promote": False, "gate": {"reason": "the holdout lost 3.10 points"}}
        (refused / "summary.json").write_text(json.dumps(record))
        denied = httpx.post(s.url + "reload", params={"ckpt": str(refused)}, timeout=60)
        assert denied.status_code == 409 and "was not promoted: the holdout lost 3.10 points" in denied.json()["detail"]
        assert httpx.get(s.url + "info").json()["checkpoint"] == str(other / "checkpoints" / "best.ckpt")
        BAD_INPUTS.append(("mnist serve: POST /reload of a run its gate did not promote", denied.json()["detail"]))


def test_sigterm_answers_the_request_in_flight_and_exits_0(trained: Path, digits: np.ndarray) -> None:
    cwd = trained.parent.parent.parent
    with serving(f"ckpt={trained}", cwd=cwd) as s:
        body = json.dumps({"images": digits[:2].tolist()}).encode()
        head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        host, port = s.url.removeprefix("http://").rstrip("/").split(":")
        in_flight = socket.create_connection((host, int(port)), timeout=10)
        in_flight.sendall(head.encode() + body[:100])  # half a request: the server is reading it
        time.sleep(0.3)
        s.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # new connections are refused once it stops accepting
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                time.sleep(0.1)
            except OSError:
                break
        else:
            pytest.fail("the server still accepts connections 10 s after SIGTERM")
        in_flight.sendall(body[100:])
        reply = b""
        while chunk := in_flight.recv(65536):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert len(json.loads(reply.split(b"\r\n\r\n", 1)[1])["predictions"]) == 2
        assert s.process.wait(timeout=30) == 0, "".join(s.errors)
    record = summary(run_dirs(cwd, "serve")[-1])
    assert record["status"] == "completed" and record["stopped_by"] == "SIGTERM"
    assert record["requests_by_status"]["200"] >= 1 and record["images"] >= 2


def test_the_batcher_groups_what_arrives_together_and_refuses_a_full_queue() -> None:
    calls: list[int] = []

    def predict(digits: np.ndarray) -> np.ndarray:
        calls.append(len(digits))
        return np.eye(10, dtype=np.float32)[digits[:, 0, 0] % 10]

    def digit(k: int) -> np.ndarray:
        return np.full((1, 28, 28), k, np.uint8)

    async def scenario() -> dict:
        seen = {}
        batcher = Batcher(Predictor(predict, [], {}), max_batch=8, max_wait_ms=1000, max_queue=16)
        batcher.start()
        # Twelve queued together: batches of at most 8, each image its own answer.
        answers = await asyncio.gather(*(batcher(digit(k)) for k in range(12)))
        seen["labels"], seen["calls"] = [int(p.argmax()) for p, _ in answers for p in p], calls[:]
        # A lone request does not wait for max_wait_ms (1 s): nothing else is arriving.
        started = time.perf_counter()
        await batcher(digit(3))
        seen["lone_s"] = time.perf_counter() - started
        # While a request is still being read, the batch waits for it (up to max_wait_ms).
        calls.clear()

        async def late() -> np.ndarray:
            with batcher.arrival():
                await asyncio.sleep(0.2)
            return await batcher(digit(5))

        reading = asyncio.ensure_future(late())
        await asyncio.sleep(0)  # it is being read now
        await asyncio.gather(batcher(digit(4)), reading)
        seen["waited_calls"] = calls[:]
        try:
            await batcher(np.zeros((17, 28, 28), np.uint8))
        except QueueFull as e:
            seen["refused"] = str(e)
        await batcher.stop()
        return seen

    seen = asyncio.run(scenario())
    assert seen["labels"] == [k % 10 for k in range(12)]
    assert seen["calls"] == [8, 4]
    assert seen["lone_s"] < 0.5
    assert seen["waited_calls"] == [2]
    assert "serve.max_queue=16" in seen["refused"]


def test_a_request_whose_images_straddle_a_swap_is_answered_by_one_model() -> None:
    """Six images, batches of four: the model is swapped while the first four run, so the last two
    would go through the new one; the request is run again, and all six answers are the new model's."""
    calls: list[tuple[str, int]] = []

    def one_hot(name: str, k: int) -> Predictor:
        def predict(digits: np.ndarray) -> np.ndarray:
            calls.append((name, len(digits)))
            if name == "old":
                batcher.swap(new)  # a reload lands while this batch runs
            return np.tile(np.eye(10, dtype=np.float32)[k], (len(digits), 1))

        return Predictor(predict, [name], {})

    old, new = one_hot("old", 0), one_hot("new", 1)
    batcher = Batcher(old, max_batch=4, max_wait_ms=0, max_queue=16)

    async def scenario() -> tuple[np.ndarray, Predictor]:
        batcher.start()
        try:
            return await batcher(np.zeros((6, 28, 28), np.uint8))
        finally:
            await batcher.stop()

    probabilities, model = asyncio.run(scenario())
    assert model is new and probabilities.argmax(1).tolist() == [1] * 6
    assert calls == [("old", 4), ("new", 2), ("new", 4), ("new", 2)]


def test_ready_only_once_warmed_and_not_while_stopping() -> None:

    warmed = threading.Event()

    def predict(digits: np.ndarray) -> np.ndarray:
        warmed.wait(10)  # a model that takes its time to warm up
        return np.full((len(digits), 10), 0.1, np.float32)

    served = Predictor(predict, [str(c) for c in range(10)], {})
    app = build_app(served, compose_config("stage=serve"), ServerMetrics(), lambda ckpt: served)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").json() == {"ready": False} and client.get("/ready").status_code == 503
        warmed.set()
        deadline = time.monotonic() + 10
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/ready").json() == {"ready": True}
        app.state.stopping = lambda: True
        assert client.get("/ready").status_code == 503


def test_an_exported_onnx_file_predicts_like_its_checkpoint(trained: Path, digits: np.ndarray, tmp_path: Path) -> None:
    """What serve and predict load from an .onnx file answers as the checkpoint does."""
    pytest.importorskip("onnxruntime")
    done = mnist("export", f"ckpt={trained}", "format=onnx", "export.check_images=64", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    onnx_file = next((tmp_path / "outputs" / "export").glob("*/model.onnx"))
    served = load_predictor(compose_config("stage=serve", f"ckpt={onnx_file}"), None, threads=1)
    assert served.classes == [str(c) for c in range(10)] and served.info["backend"] == "onnxruntime"
    assert served.info["test_acc"] == summary(onnx_file.parent)["exported_acc"]
    assert np.allclose(served.predict(digits), reference(trained, digits), atol=2e-2)
    # `mnist predict` takes the file too.
    for k, digit in enumerate(digits[:4]):
        Image.fromarray(digit).save(tmp_path / f"{k}.png")
    done = mnist("predict", f"ckpt={onnx_file}", f"input={tmp_path}/*.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(tmp_path, "predict")
    labels = [line.split(",")[1] for line in (run / "predictions.csv").read_text().splitlines()[1:]]
    cfg = compose_config()
    expected = reference(
        trained, np.stack([preprocess(digit.astype(np.float32), cfg.preprocess) for digit in digits[:4]])
    )
    assert labels == [str(c) for c in expected.argmax(1)]


def test_answers_are_not_held_back_by_nagle() -> None:
    """Connections accepted on the listening socket send at once (TCP_NODELAY), so a response
    written in two parts does not wait ~40 ms for the client's delayed ACK."""

    async def accepted_nodelay() -> int:
        sock = listen("127.0.0.1", 0)
        accepted: asyncio.Future = asyncio.get_running_loop().create_future()
        server = await asyncio.start_server(
            lambda r, w: accepted.set_result(
                w.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            ),
            sock=sock,
        )
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        value = await accepted
        writer.close()
        server.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0


def test_a_port_in_use_and_a_missing_extra_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = listen("127.0.0.1", 0)
    with pytest.raises(UserError, match=r"cannot listen on 127\.0\.0\.1:\d+ .*serve\.port="):
        listen("127.0.0.1", taken.getsockname()[1])
    taken.close()
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(UserError, match=r"pip install 'mnist-cli\[serve\]'"):
        need_serve_extra()


def test_explain_answers_as_predict_does_and_adds_a_map_of_the_deciding_pixels(server, digits: np.ndarray) -> None:
    photo = png(digits[3], paper=True)
    [said] = predictions(httpx.post(server.url + "predict", content=photo, headers={"content-type": "image/png"}))
    reply = httpx.post(server.url + "explain?input=true", files={"file": ("d.png", photo, "image/png")})
    assert reply.status_code == 200, reply.text
    [explained] = reply.json()["explanations"]
    assert {k: explained[k] for k in said} == said  # the same answer, probabilities and class index
    found = np.array(explained["map"])
    assert found.shape == (28, 28) and np.abs(found).sum() > 0
    ink = np.array(explained["input"]) > 0
    assert np.abs(found[ink]).sum() > np.abs(found[~ink]).sum()  # integrated gradients: on the ink
    header, _, data = explained["map_png"].partition(",")
    assert header == "data:image/png;base64"
    overlay = Image.open(io.BytesIO(base64.b64decode(data)))
    assert overlay.size == (28, 28) and overlay.mode == "RGBA"
    for body, status in ((b"not an image", 400), (b"{", 422)):
        kind = "image/png" if status == 400 else "application/json"
        answer = httpx.post(server.url + "explain", content=body, headers={"content-type": kind})
        assert answer.status_code == status, answer.text
        BAD_INPUTS.append((f"mnist serve: POST /explain with {body[:12]!r}", f"{status} {answer.json()['detail']}"))
