"""A sweep's runs as Ray tasks (Moritz et al. 2018, "Ray: A Distributed Framework for Emerging AI
Applications"): the cluster places each run where the CPUs or GPU it asks for are free.

Nothing assumes a shared file system. The driver (the `loralab sweep --ray` process) decides what
runs, exactly as a local sweep does (`loralab.runs.state`), and ships each run its data files as
bytes through Ray's object store; the task trains into a temporary folder on its worker and returns
the folder's files (`weights.safetensors`, `run.json`) as bytes; the driver writes them into the
sweep folder, weights first and the record last, each atomically, as `run()` does. So a killed
driver leaves finished runs finished and the rest absent, and the next invocation resumes.

The record keeps the data paths the experiment planned, not the worker's temporary copies, so that
resume compares it with the plan as it compares a local run's. The model must be loadable on every
worker: a packaged name, a hub name in the workers' cache, or a folder at the same path on each.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from loralab.errors import LoralabError
from loralab.runs.artifacts import RECORD, WEIGHTS, _atomic_write, write_json
from loralab.runs.config import RunConfig
from loralab.sweeps.experiment import PlannedRun

_DATA = ("train", "valid")


def _ray():
    try:
        import ray
    except ImportError:
        raise LoralabError("--ray needs Ray, an optional extra: pip install 'loralab[ray]'") from None
    return ray


def resources(config: RunConfig, threads: int, cluster_gpus: float) -> dict[str, float]:
    """What one run asks Ray for: `threads` CPUs, and a GPU when it runs on CUDA ('auto' on a cluster with GPUs)."""
    gpu = config.device.startswith("cuda") or (config.device == "auto" and cluster_gpus > 0)
    return {"num_cpus": threads, "num_gpus": 1 if gpu else 0}


def _train_remotely(settings: dict[str, Any], threads: int, *data: bytes | None) -> dict[str, bytes]:
    """On a worker: write the shipped data files, run, and return the run folder's files."""
    import torch

    from loralab.runs import run

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="loralab-ray-") as tmp:
        settings = dict(settings)
        for index, (key, content) in enumerate(zip(_DATA, data)):
            if content is not None:
                path = Path(tmp, "data", str(index), Path(settings[key]).name)
                path.parent.mkdir(parents=True)
                path.write_bytes(content)
                settings[key] = str(path)
        out = Path(tmp, "run")
        run(RunConfig.from_dict(settings), out, progress=False, log=lambda _: None)
        return {f.name: f.read_bytes() for f in out.iterdir() if f.is_file() and not f.name.startswith(".")}


def _planned_paths(record: dict[str, Any], config: RunConfig) -> dict[str, Any]:
    """The record with the worker's copies of the data files named by their planned paths again."""
    import json

    text = json.dumps(record)
    for key in _DATA:
        local = record.get("config", {}).get(key)
        if local and getattr(config, key):
            text = text.replace(json.dumps(local)[1:-1], json.dumps(getattr(config, key))[1:-1])
    return json.loads(text)


def _write_back(folder: Path, files: dict[str, bytes], config: RunConfig) -> dict[str, Any]:
    import json

    record = _planned_paths(json.loads(files[RECORD]), config)
    for name in (RECORD, WEIGHTS):
        (folder / name).unlink(missing_ok=True)  # a stale record never pairs with new weights
    for name, content in files.items():
        if name != RECORD:
            _atomic_write(folder / name, lambda tmp, content=content: Path(tmp).write_bytes(content))
    write_json(folder / RECORD, record)
    return record


def _reachable(address: str | None) -> None:
    """Refuse at once an address where nothing listens (Ray itself retries for minutes)."""
    import socket

    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        raise LoralabError(f"--ray {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
        raise LoralabError(f"--ray {address}: cannot reach a Ray cluster ({e.strerror or e})") from None


def ray_executor(address: str | None, threads: int = 1, log: Callable[[str], None] = print):
    """An executor for `sweep()`: every run a Ray task on the cluster at `address` (None: a new
    local Ray instance, or the one RAY_ADDRESS names)."""
    ray = _ray()
    _reachable(address)  # before the sweep writes anything

    def execute(reasons: list[tuple[PlannedRun, str]], out_dir: Path) -> Iterator[tuple[PlannedRun, dict]]:
        if not reasons:
            return
        if not ray.is_initialized():
            try:
                ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR")
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise LoralabError(f"--ray {address or ''}: cannot reach a Ray cluster ({e})".replace("  ", " ")) from None
        gpus = ray.cluster_resources().get("GPU", 0)
        task = ray.remote(_train_remotely)
        shipped: dict[str, Any] = {}  # one copy of each data file in the object store

        def data(path: str | None):
            if not path:
                return None
            if path not in shipped:
                shipped[path] = ray.put(Path(path).read_bytes())
            return shipped[path]

        pending = {}
        for planned, why in reasons:
            config = planned.config
            # A worker that dies (a lost node, the memory monitor) is retried; an error in the run is not.
            ref = task.options(**resources(config, threads, gpus), max_retries=2).remote(
                config.to_dict(), threads, *(data(getattr(config, key)) for key in _DATA))
            pending[ref] = planned
            log(f"submitted {planned.folder}" + ("" if why == "not run yet" else f" ({why})"))
        try:
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                planned = pending.pop(done)
                try:
                    files = ray.get(done)
                except ray.exceptions.RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, LoralabError):
                        raise LoralabError(f"run {planned.folder}: {cause}") from None
                    raise
                except ray.exceptions.RayError as e:  # the worker, not the run, failed
                    first = (str(e).strip().splitlines() or [""])[0]
                    raise LoralabError(f"run {planned.folder}: Ray could not finish it ({type(e).__name__}: "
                                       f"{first}); rerun the sweep to resume") from None
                yield planned, _write_back(out_dir / planned.folder, files, planned.config)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    return execute
