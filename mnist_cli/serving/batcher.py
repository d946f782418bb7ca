"""Dynamic batching: images of requests that arrive together go through the model in one call.

Requests put their digits in one queue and await their answers; one worker takes what is queued
(up to `max_batch` images) and runs the model in its own thread, so the event loop keeps reading
requests meanwhile. The worker waits up to `max_wait_ms` for more images only while requests are
still being read (`arriving`): a lone request never waits, and under load the batch fills up with
the requests that came in during the previous forward pass. The queue is bounded (`max_queue`
images): beyond it a request is refused at once (QueueFull) instead of waiting without end.

The model can be swapped while requests flow (`swap`, for POST /reload): each forward pass runs
the model that was current when its batch was taken, and a request whose images went through two
models (its images straddled the swap) is run again, so every answer is one model's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np


class Model(Protocol):
    def predict(self, digits: np.ndarray) -> np.ndarray:
        """digits, uint8 (N, 28, 28) -> probabilities (N, classes)"""


class QueueFull(Exception):
    """More images are waiting than serve.max_queue allows."""


class Batcher:
    def __init__(
        self,
        model: Model,
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
        on_batch: Callable[[int], None] = lambda size: None,
    ):
        self.model = model  # what the next batch runs
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch  # told each batch's size (the metrics)
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[tuple[np.ndarray, Model]]]] = asyncio.Queue()
        self.arriving = 0  # requests being read that will queue images
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self.worker: asyncio.Task | None = None

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self.work())

    async def stop(self) -> None:
        """After the last request was answered: end the worker and its thread."""
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        self.executor.shutdown(wait=True)

    @contextlib.contextmanager
    def arrival(self) -> Iterator[None]:
        """Around reading a request whose images will be queued: batches forming meanwhile wait for it."""
        self.arriving += 1
        try:
            yield
        finally:
            self.arriving -= 1

    def swap(self, model: Model) -> Model:
        """Run `model` from the next batch on; the model it replaces."""
        old, self.model = self.model, model
        return old

    def queued(self) -> int:
        return self.queue.qsize()

    async def __call__(self, digits: np.ndarray) -> tuple[np.ndarray, Model]:
        """Probabilities for digits (N, 28, 28), from the batches they were put in, and the model
        that gave them all; QueueFull when they do not fit in the queue (then none of them is queued)."""
        while True:
            if self.queue.qsize() + len(digits) > self.max_queue:
                raise QueueFull(
                    f"{self.queue.qsize()} images are waiting and this request brings {len(digits)}; "
                    f"the queue holds serve.max_queue={self.max_queue}"
                )
            loop = asyncio.get_running_loop()
            answers = [loop.create_future() for _ in digits]
            for digit, answer in zip(digits, answers):
                self.queue.put_nowait((digit, answer))
            found = await asyncio.gather(*answers)
            models = {id(model) for _, model in found}
            if len(models) == 1:  # else a swap came between its batches: once more, all by the new model
                return np.stack([p for p, _ in found]), found[0][1]

    async def next_batch(self) -> list[tuple[np.ndarray, asyncio.Future[tuple[np.ndarray, Model]]]]:
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            left = deadline - loop.time()
            if not self.arriving or left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return batch

    async def work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.next_batch()
            self.on_batch(len(batch))
            model = self.model
            try:
                probabilities = await loop.run_in_executor(
                    self.executor, model.predict, np.stack([d for d, _ in batch])
                )
            except Exception as e:  # answered to every request of the batch as a server error
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(e)
                continue
            for (_, answer), p in zip(batch, probabilities):
                if not answer.done():  # a client that went away cancelled its answer
                    answer.set_result((p, model))
