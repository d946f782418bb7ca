"""logger=wandb: each job one W&B run, kept offline inside the run directory (no network here) and
read back from W&B's own run file, held against the run directory's files; a sweep's jobs, and a
resumed run that continues its W&B run."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from mnist_cli.loggers.wandb import has_wandb_key

from conftest import FAST, interrupted_after_an_epoch, mnist, run_dirs, summary, write_dataset

wandb = pytest.importorskip("wandb")
pytestmark = pytest.mark.slow
OFFLINE = ["logger=wandb", "logger.mode=offline"]


def records(run_file: Path) -> list:
    """The records of a .wandb file: W&B's LevelDB-style log (a 7-byte header, then 32 KiB blocks
    of records, each with a 7-byte header: CRC, length, kind 1 full | 2 first | 3 middle | 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    found, pos, part = [], 7, b""
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:  # a block's tail too short for a header is padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        part += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(part)
            found.append(record)
            part = b""
    return found


def tracked(run: Path) -> dict:
    """What the run directory's W&B runs recorded, in order: id, config, history rows, summary, files."""
    seen: dict = {"ids": [], "config": {}, "history": [], "summary": {}, "files": set(), "group": None}
    for run_file in sorted(run.glob("wandb/offline-run-*/run-*.wandb")):  # one per process that ran it
        first = True
        for record in records(run_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":  # (sent again when the run changes, e.g. its tags)
                seen["ids"] += [record.run.run_id] if first else []
                first = False
                seen["group"] = record.run.run_group
                seen["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
            elif kind == "config":
                seen["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
            elif kind == "history":
                row = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
                seen["history"].append(row)
            elif kind == "summary":
                seen["summary"].update(
                    {"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in record.summary.update}
                )
            elif kind == "files":
                seen["files"] |= {f.path for f in record.files.files}
    return seen


def test_a_run_is_tracked_offline_with_its_config_epochs_results_and_files(tmp_path: Path, tiny_data: Path) -> None:
    no_key = {"HOME": str(tmp_path), "WANDB_API_KEY": ""}  # logger.mode=auto finds no API key: offline
    done = mnist("pretrain", f"dataset.root={tiny_data}", *FAST, "logger=wandb", cwd=tmp_path, env=no_key)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(tmp_path, "pretrain")
    recorded, seen = summary(run), tracked(run)
    assert seen["ids"] == [recorded["wandb_run_id"]] and recorded["wandb_mode"] == "offline"
    assert seen["config"]["trainer"]["epochs"] == 2 and seen["config"]["model"]["channels"] == [8, 16]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(h["_step"], h["val_acc"], h["train_loss"]) for h in seen["history"]] == [
        (r["epoch"], r["val_acc"], r["train_loss"]) for r in rows
    ]
    assert seen["summary"]["test_acc"] == recorded["test_acc"] and seen["summary"]["status"] == "completed"
    assert {"config.yaml", "summary.json", "metrics.csv"} <= seen["files"]
    assert "wandb sync" in (run / "run.log").read_text()  # how to upload it later


def test_a_sweep_of_three_jobs_is_three_runs_in_one_group(tmp_path: Path, tiny_data: Path) -> None:
    done = mnist("pretrain", "-m", f"dataset.root={tiny_data}", *FAST, *OFFLINE, "trainer.seed=0,1,2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    jobs = sorted((tmp_path / "outputs" / "multirun").glob("*/[0-9]"))
    seen = [tracked(job) for job in jobs]
    assert len(seen) == 3 and len({s["ids"][0] for s in seen}) == 3
    assert {s["group"] for s in seen} == {jobs[0].parent.name}
    assert [s["config"]["trainer"]["seed"] for s in seen] == [0, 1, 2]


def test_a_resumed_run_continues_its_wandb_run_without_repeating_an_epoch(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", n_train=3100, n_test=100)
    args = [
        "pretrain",
        f"dataset.root={data}",
        *FAST,
        "trainer.epochs=3",
        "trainer.checkpoint_every_steps=10",
        *OFFLINE,
    ]
    run = interrupted_after_an_epoch(*args, cwd=tmp_path)
    stopped = tracked(run)
    assert stopped["ids"] == [summary(run)["wandb_run_id"]] and stopped["summary"]["status"] == "interrupted"

    resumed = mnist(*args, f"resume={run}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    seen = tracked(run)  # a second offline record of the same run: `wandb sync` joins them
    assert seen["ids"] == stopped["ids"] * 2 and seen["summary"]["status"] == "completed"
    assert [h["_step"] for h in seen["history"]] == [1, 2, 3]


def test_an_api_key_decides_online_or_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    assert not has_wandb_key()
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert has_wandb_key()
    (tmp_path / ".netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "abc")
    assert has_wandb_key()
