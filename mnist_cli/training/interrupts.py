"""Stopping training cleanly on Ctrl-C (SIGINT) or SIGTERM.

While training, the first signal only asks the loop to stop: it finishes the step it is in,
writes a checkpoint that `resume=<run dir>` continues from, and raises Interrupted. A second signal
exits at once; files are only ever replaced whole (run_dir.atomic_path), so none is left half written.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from mnist_cli.training import distributed

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A context in which SIGINT/SIGTERM set `signum` instead of stopping the process."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self.previous = {s: signal.signal(s, self.handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def agreed(self, device: torch.device, sync: bool) -> int:
        """The signal that asked to stop (0: none). Under torchrun, any rank's, agreed on only at a
        sync point: every rank must stop at the same step, and agreeing costs a host sync."""
        if distributed.world_size() == 1:
            return self.signum or 0
        if not sync:
            return 0
        import torch

        return int(distributed.all_reduce(torch.tensor(self.signum or 0, device=device), op="max"))

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            os.write(2, b"mnist: stopped at once; the run keeps its last complete checkpoint\n")
            os._exit(128 + signum)
        self.signum = signum
        log.warning(
            f"{signal.Signals(signum).name}: finishing this step and saving a checkpoint (again to stop at once)"
        )


def raise_on_sigterm() -> None:
    """Outside training, make SIGTERM stop the program the way Ctrl-C does."""
    from mnist_cli.errors import Interrupted

    def handle(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, handle)
