"""LitServe serving the same checkpoint, with its own dynamic batching (max_batch_size 64,
batch_timeout 2 ms, as `mnist serve`'s defaults); benchmarks/serve.py starts it when litserve can
be imported. Same request and answer as serve_plain.py.

    python benchmarks/serve_litserve.py --ckpt RUN --port N
"""

from __future__ import annotations

import argparse

import litserve as ls
import numpy as np
import torch
from serve_plain import load


class DigitAPI(ls.LitAPI):
    def __init__(self, ckpt: str):
        super().__init__(max_batch_size=64, batch_timeout=0.002)
        self.ckpt = ckpt

    def setup(self, device: str) -> None:
        torch.set_num_threads(1)
        self.model, self.prep, self.digit = load(self.ckpt)

    def decode_request(self, request: dict) -> np.ndarray:
        return self.digit(request["images"][0])

    def batch(self, digits: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(digits))[:, None]

    def predict(self, x: torch.Tensor) -> list[tuple[int, float]]:
        with torch.no_grad():
            p = self.model(self.prep(x, train=False)).softmax(1)
        return list(zip(p.argmax(1).tolist(), p.max(1).values.tolist()))

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: tuple[int, float]) -> dict:
        return {"predictions": [{"label": str(output[0]), "confidence": output[1]}]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a run directory, a .ckpt file or latest")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ls.LitServer(DigitAPI(args.ckpt), accelerator="cpu", devices=1)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)
