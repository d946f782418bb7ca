"""The resolvers conf/config.yaml's ${...} use: the run directory (a new unique one, or the one
being resumed), the sweep directory, where Hydra keeps its record, and SQLite URLs for stores.
Registered before Hydra composes (cli.py) or any config is composed (config/compose.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from mnist_cli.run_dir import unique_dir


def run_dir_for(resume: str | None, fresh_base: str) -> str:
    """The run directory: the one being resumed, or a new unique one."""
    return str(resume) if resume is not None else unique_dir(fresh_base)


def hydra_subdir_for(resume: str | None) -> str:
    """Where Hydra records the composition; a resumed run must not overwrite the original's."""
    if resume is None:
        return ".hydra"
    return f".hydra/resumed_{datetime.now():%Y-%m-%d_%H-%M-%S}"


def sqlite_url(path: str) -> str:
    """An SQLite URL for `path` (e.g. an Optuna study), creating its folder."""
    file = Path(path).expanduser().resolve()
    file.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{file}"


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    # Cached (per config, by their arguments): the run and sweep directories are made once however
    # often Hydra reads them, and Hydra copies a sweep's resolved values to its jobs, so jobs in
    # other processes (launcher=submitit_local, slurm) share the sweep directory.
    OmegaConf.register_new_resolver("mnist_run_dir", run_dir_for, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("mnist_unique_dir", unique_dir, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("mnist_hydra_subdir", hydra_subdir_for, replace=True)
    OmegaConf.register_new_resolver("mnist_sqlite", sqlite_url, replace=True)
