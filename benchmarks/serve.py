"""Requests per second and latency of `mnist serve` against the servers people write instead
(benchmarks/serve_plain.py: the one-request-one-forward FastAPI route of the tutorials;
serve_litserve.py: LitServe with its batching, when litserve can be imported), at several client concurrencies; then
whether `mnist serve`'s memory stays flat over many requests.

    python benchmarks/serve.py --ckpt latest
    python benchmarks/serve.py --ckpt outputs/pretrain/<run> --concurrency 1,8,64 --requests 3000
    PYTHONPATH=<folder with litserve> python benchmarks/serve.py --ckpt latest   # adds the LitServe row

Everything listens on 127.0.0.1 and every load is a fixed number of requests. Every server gets the
same request: one MNIST test digit drawn dark on white at 112x112, as PNG in base64 JSON, to
/predict. The client is a few lines of asyncio on keep-alive connections (an HTTP library's
client would cost more CPU than the servers under test, on the same cores). A reply that is not
200, or whose label differs from the first reply's, counts as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_cnn import DEFAULT_DATA  # noqa: E402
from recipes import cpu_name  # noqa: E402

from mnist_cli.config.compose import compose_config  # noqa: E402
from mnist_cli.data.datasets import load_split  # noqa: E402

HERE = Path(__file__).parent


def request_bytes(data: str) -> bytes:
    """The HTTP request every client sends: test digit 0 of the data set, dark ink on white, 112x112 PNG."""
    cfg = compose_config(f"dataset.root={data}", "dataset.download=false")
    digit = load_split(cfg.dataset, "test").images[0].reshape(28, 28).numpy()
    buffer = io.BytesIO()
    Image.fromarray(255 - digit).resize((112, 112)).save(buffer, format="PNG")
    body = json.dumps({"images": [base64.b64encode(buffer.getvalue()).decode()]}).encode()
    head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def one_client(port: int, request: bytes, left: list[int], latencies: list[float], answers: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while left[0] > 0:
        left[0] -= 1
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        body = await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        answers.append(head.split(b" ")[1] + b" " + json.dumps(json.loads(body)["predictions"][0]["label"]).encode())
    writer.close()


def load(port: int, request: bytes, concurrency: int, total: int) -> dict:
    """`total` requests from `concurrency` clients at once: requests/s, latency percentiles, errors."""
    latencies: list[float] = []
    answers: list[bytes] = []

    async def run() -> float:
        left = [total]
        started = time.perf_counter()
        await asyncio.gather(*(one_client(port, request, left, latencies, answers) for _ in range(concurrency)))
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    ms = np.array(latencies) * 1000
    errors = sum(answer != answers[0] or not answer.startswith(b"200") for answer in answers)
    return {
        "rps": len(latencies) / elapsed,
        "p50": np.percentile(ms, 50),
        "p95": np.percentile(ms, 95),
        "p99": np.percentile(ms, 99),
        "errors": errors,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name: str, ckpt: str, port: int, workdir: str) -> subprocess.Popen:
    if name == "mnist serve":
        command = [
            sys.executable,
            "-m",
            "mnist_cli",
            "serve",
            f"ckpt={ckpt}",
            f"serve.port={port}",
            f"outputs_root={workdir}",
        ]
    else:
        command = [sys.executable, str(HERE / f"serve_{name}.py"), f"--ckpt={ckpt}", f"--port={port}"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"{name} did not start: {server.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.2)
    raise SystemExit(f"{name} did not answer /health in 120 s")


def stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)  # the whole group: LitServe runs its workers as child processes
    server.wait(timeout=60)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def litserve_importable() -> bool:
    return subprocess.run([sys.executable, "-c", "import litserve"], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default="latest", help="a run directory, a .ckpt file or latest (default)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="the MNIST files the request's digit comes from")
    parser.add_argument("--concurrency", default="1,8,64", help="clients at once, comma-separated")
    parser.add_argument("--requests", type=int, default=3000, help="requests per load (concurrency 1: a third)")
    parser.add_argument("--memory-requests", type=int, default=20000, help="requests for the memory check")
    args = parser.parse_args()
    console = Console(width=120)
    request = request_bytes(args.data)
    levels = [int(c) for c in args.concurrency.split(",")]
    servers = ["mnist serve", "plain"] + (["litserve"] if litserve_importable() else [])
    if "litserve" not in servers:
        console.print("LitServe is not importable here: its row is left out (pip install litserve, or PYTHONPATH)")

    results: dict[tuple[str, int], dict] = {}
    memory: list[tuple[int, float]] = []
    precision = "?"
    with tempfile.TemporaryDirectory() as workdir:
        for name in servers:
            port = free_port()
            server = start(name, args.ckpt, port, workdir)
            try:
                load(port, request, 8, 300)  # warm-up
                for concurrency in levels:
                    total = args.requests // 3 if concurrency == 1 else args.requests
                    results[name, concurrency] = load(port, request, concurrency, total)
                    console.print(
                        f"{name} at concurrency {concurrency}: {results[name, concurrency]['rps']:.0f} requests/s"
                    )
                if name == "mnist serve":
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/info") as reply:
                        precision = json.loads(reply.read())["precision"]
                    served = 0
                    for chunk in [2000] + [2000] * ((args.memory_requests - 2000) // 2000):
                        load(port, request, 8, chunk)
                        served += chunk
                        memory.append((served, rss_mib(server.pid)))
            finally:
                stop(server)

    table = Table(
        title=f"POST /predict on {cpu_name()}, loopback, {args.requests} requests per load (concurrency 1: "
        f"{args.requests // 3}); mnist serve in {precision}, the others in fp32"
    )
    for column in ("server", "clients", "requests/s", "p50 ms", "p95 ms", "p99 ms", "errors", "x plain"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for (name, concurrency), r in results.items():
        ratio = r["rps"] / results["plain", concurrency]["rps"]
        table.add_row(
            name,
            str(concurrency),
            f"{r['rps']:.0f}",
            f"{r['p50']:.2f}",
            f"{r['p95']:.2f}",
            f"{r['p99']:.2f}",
            str(r["errors"]),
            f"{ratio:.2f}",
        )
    console.print(table)
    if memory:
        console.print(
            "mnist serve resident memory after "
            + ", ".join(f"{n:,}: {mib:.1f} MiB" for n, mib in memory)
            + f" requests (change after the first 2,000: {memory[-1][1] - memory[0][1]:+.1f} MiB)"
        )


if __name__ == "__main__":
    main()
