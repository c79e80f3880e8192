"""What training and evaluation share: the distributed set-up, AMP, seeds, atomic file
writes, checkpoints (saved atomically, read safely) and the lock on a run folder.

Nothing here knows a training recipe: configs come in as objects with the attributes used.
"""

from __future__ import annotations

import atexit
import csv
import io
import itertools
import os
import random
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .methods import MethodConfig, create_method
from .models import create_model
from .serialization import load_plain


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stage_folder(final: str | Path) -> Path:
    """A fresh, empty folder beside ``final`` to write a result into (``.NAME.partial``, one name
    for every process of a torchrun job); :func:`publish_folder` moves it into place whole, so
    that ``final`` never holds a half-written or mixed result."""
    import shutil

    final = Path(final)
    stage = final.parent / f".{final.name}.partial"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


def check_output_folder(out: str | Path, marker: str, what: str) -> None:
    """Refuse an ``--out`` folder that holds something other than an earlier output of this
    kind (one with ``marker`` in it), before any work: it would be replaced whole."""
    out = Path(out)
    if out.is_file():
        raise FileExistsError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
        raise FileExistsError(
            f"--out {out} holds files that are not {what}'s: give an empty or new folder (it is "
            "written whole, replacing what is there)"
        )


def publish_folder(stage: str | Path, final: str | Path) -> None:
    """Replace ``final`` (if any) by ``stage`` in two renames: a reader sees the old folder or the
    new one, never a mix."""
    import shutil

    stage, final = Path(stage), Path(final)
    old = final.parent / f".{final.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(stage, final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv_rows(path: str | Path, rows) -> int:
    """Write an iterable of dicts (columns: the first row's keys) as CSV, one row at a time,
    atomically; returns the number of rows (nothing is written for none)."""
    path = Path(path)
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(first))
            writer.writeheader()
            for row in itertools.chain([first], rows):
                writer.writerow(row)
                count += 1
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def write_csv(path: str | Path, rows: list[Mapping], columns: list[str] | None = None) -> None:
    """Write rows as CSV atomically; columns default to every key, in first-seen order."""

    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


@dataclass
class Dist:
    """Where this process sits in a (possibly one-process) torch.distributed job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` (a GPU if PyTorch sees one, else the CPU), ``cpu`` or ``cuda``, the same way for
    every command; ``cuda`` without a GPU is refused with a sentence."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device cuda: PyTorch sees no GPU here (torch.cuda.is_available() is False); "
            "use device=cpu or device=auto"
        )
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    return torch.device("cuda") if use_cuda else torch.device("cpu")


def setup_distributed(device: str = "auto", timeout_s: float = 0.0) -> Dist:
    """Read torchrun's environment; start the process group when WORLD_SIZE > 1.

    ``timeout_s`` bounds every collective: a rank that stops or hangs makes the others fail
    with a timeout after that long instead of waiting forever (0: ``AUTO_DIST_TIMEOUT``); rank
    0 says, while waiting, which rank has stopped answering (:func:`start_rank_watch`)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device).type == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        import datetime

        if use_cuda:  # NCCL raises on a timed-out collective only with async error handling
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        timeout_s = resolve_dist_timeout(timeout_s, use_cuda)
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(seconds=float(timeout_s)),
        )
        start_rank_watch(rank, world, timeout_s)
    return Dist(rank, world, local_rank, dev)


#: ``dist_timeout: 0`` means this many seconds: on GPUs (NCCL) as torch's default, on the CPU
#: (gloo) less, since a CPU job's collectives wait seconds at most and a stopped rank should
#: fail the job within minutes
AUTO_DIST_TIMEOUT = {"cuda": 600.0, "cpu": 180.0}
#: seconds between the heartbeats every rank writes to the process group's store, and how stale
#: one may be before rank 0 says that rank is not answering
HEARTBEAT_S, SILENT_S = 5.0, 30.0


def resolve_dist_timeout(timeout_s: float, use_cuda: bool) -> float:
    """The collective timeout in seconds: ``timeout_s``, or for 0 the default of the device."""
    if timeout_s and timeout_s > 0:
        return float(timeout_s)
    return AUTO_DIST_TIMEOUT["cuda" if use_cuda else "cpu"]


#: the heartbeat threads of :func:`start_rank_watch` and the event that stops them
_WATCH: dict = {"threads": [], "stop": None}


def start_rank_watch(rank: int, world: int, timeout_s: float) -> None:
    """Heartbeats in the process group's store: every rank stamps its key every
    ``HEARTBEAT_S``; rank 0 prints, once per silence, which rank has not stamped for
    ``SILENT_S`` (stopped with SIGSTOP, stuck, or gone) and how long the others will still wait
    (``timeout_s``) before the job fails. Daemon threads, stopped by :func:`stop_rank_watch`
    (at the latest at exit): a daemon thread still inside a store call when the interpreter
    exits is torn down across C++ frames, which aborts a process that finished its work
    (std::terminate, exit code -6)."""
    import sys
    import threading
    import time

    try:
        store = dist.distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 - an unusual launcher: no watch, the timeout still holds
        return
    beat_s = float(os.environ.get("WSOL_HEARTBEAT_S", HEARTBEAT_S))
    silent_s = float(os.environ.get("WSOL_SILENT_S", SILENT_S))
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                store.set(f"wsol/heartbeat/{rank}", repr(time.time()))
            except Exception:  # noqa: BLE001 - the store is gone: the job is ending
                return
            stop.wait(beat_s)

    def watch() -> None:
        told: set[int] = set()
        started = time.time()
        while not stop.wait(beat_s):
            now = time.time()
            for other in range(1, world):
                try:
                    key = f"wsol/heartbeat/{other}"
                    last = float(store.get(key)) if store.check([key]) else started
                except Exception:  # noqa: BLE001
                    return
                silent = now - last
                if silent > silent_s and other not in told:
                    told.add(other)
                    print(
                        f"wsol: rank {other} has not answered for {silent:.0f} s (stopped, stuck or "
                        f"gone?); the other ranks wait for it up to dist_timeout ({timeout_s:g} s "
                        "a collective), then the job fails",
                        file=sys.stderr,
                        flush=True,
                    )
                elif silent <= silent_s:
                    told.discard(other)

    stop_rank_watch()  # a process group made anew: the old one's threads end first
    threads = [threading.Thread(target=beat, name="wsol-heartbeat", daemon=True)]
    if rank == 0 and world > 1:
        threads.append(threading.Thread(target=watch, name="wsol-rank-watch", daemon=True))
    _WATCH.update(threads=threads, stop=stop)
    for thread in threads:
        thread.start()


def stop_rank_watch(wait_s: float = 10.0) -> None:
    """Stop :func:`start_rank_watch`'s threads and wait (up to ``wait_s``) until they are out of
    their store calls; before the process group is destroyed and before the interpreter exits."""
    if _WATCH["stop"] is not None:
        _WATCH["stop"].set()
    for thread in _WATCH["threads"]:
        thread.join(timeout=wait_s)
    _WATCH.update(threads=[], stop=None)


atexit.register(stop_rank_watch)  # before the interpreter abandons daemon threads


def runtime_record(d: Dist, batch_size: int) -> dict:
    """How a run is carried out, beyond its config: the number of processes, the global batch
    (``batch_size`` per process times the processes), the device kind and the versions of
    torch and wsol. Every run and evaluation records it; ``wsol compare`` pools only runs whose
    records agree."""
    from . import __version__

    kind = torch.cuda.get_device_name(d.device) if d.device.type == "cuda" else d.device.type
    return {
        "world_size": d.world,
        "batch_size": batch_size,
        "global_batch": batch_size * d.world,
        "device": kind,
        "torch": str(torch.__version__),
        "wsol": __version__,
    }


def runtime_line(record: dict) -> str:
    return (
        f"{record['world_size']} process(es) x batch {record['batch_size']} = global batch "
        f"{record['global_batch']} on {record['device']} (torch {record['torch']}, wsol "
        f"{record['wsol']})"
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global RNG that third-party code draws from
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 1_009 + rank * 7_919) % 2**31


def amp_dtype(cfg, device: torch.device):
    if device.type != "cuda" or cfg.amp == "none":
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A wsol checkpoint, read with ``weights_only=True`` (:func:`wsol.serialization.load_plain`:
    never code); anything else is refused with a sentence naming the file."""
    ckpt = load_plain(path, map_location, "checkpoint")
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path} is not a wsol checkpoint (no model and config in it)")
    return ckpt


class RunLock:
    """An exclusive lock on a run folder (``RUN/.lock``, ``fcntl.flock``) for as long as a
    training writes into it; a second training into the same folder stops with the holder's pid.
    The lock dies with its process, so a killed run leaves nothing to clean up. Under
    torch.distributed, rank 0 takes it and every rank learns the outcome."""

    def __init__(self, out: Path, d: Dist):
        self.out, self.d, self.file = Path(out), d, None

    def __enter__(self) -> RunLock:
        error = None
        if self.d.main:
            error = self._acquire()
        if self.d.world > 1:
            box = [error]
            dist.broadcast_object_list(box, src=0)
            error = box[0]
        if error:
            raise FileExistsError(error)
        return self

    def _acquire(self) -> str | None:
        import fcntl
        import socket

        self.out.mkdir(parents=True, exist_ok=True)
        self.file = open(self.out / ".lock", "a+")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            self.file = None
            return (
                f"run folder {self.out} is in use by {holder}: wait for it to finish, or "
                "choose another --out"
            )
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self.file.flush()
        return None

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()  # closing releases the flock
            self.file = None


def clean_temporaries(out: Path) -> None:
    """Remove the temporary files that a killed checkpoint write leaves (``.last.pt.tmp*``);
    called with the run folder locked, so no other process is writing them."""
    for tmp in Path(out).glob(".*.pt.tmp*"):
        tmp.unlink(missing_ok=True)


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over ``path``: a crash,
    a kill or a full disk leaves the previous file whole."""
    import errno

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        no_space = getattr(err, "errno", None) == errno.ENOSPC or "No space left" in str(err)
        if no_space:
            raise ValueError(
                f"no space left on the device while writing {path}; the previous "
                f"{path.name} is kept: free some space, then `wsol train --resume`"
            ) from None
        if isinstance(err, RuntimeError) and "write" in str(err).lower():
            # torch's own words for a failed write ("PytorchStreamWriter failed writing file")
            first = str(err).splitlines()[0]
            raise ValueError(
                f"could not write {path} ({first}); the previous {path.name} is kept: check the "
                f"free space and permissions of {path.parent}, then `wsol train --resume`"
            ) from None
        raise


def rng_state() -> dict:
    """Every RNG's state as plain data (ints, lists, tensors), so that checkpoints load with
    ``weights_only=True``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


CHECKPOINTS = ("last", "best")


def checkpoint_path(path: str | Path, which: str = "last") -> Path:
    """The checkpoint file of a run folder (``RUN/last.pt`` or ``RUN/best.pt``), or ``path``
    itself when it is a file. ``last`` is the default, as the reference reports the last
    checkpoint (wsolevaluation ``--eval_checkpoint_type last``)."""
    if which not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, not {which!r}")
    path = Path(path)
    if path.is_dir():
        file = path / f"{which}.pt"
        if which == "best" and not file.is_file() and (path / "last.pt").is_file():
            splits = load_checkpoint(path / "last.pt").get("splits", {})
            if splits.get("val_is_test"):
                raise ValueError(
                    f"{path}: --checkpoint best is refused: this run's val split is its test "
                    f"split ({splits['val']}), so a best checkpoint would be chosen on the test "
                    "set. Evaluate the last checkpoint, or train with a separate val split "
                    "(data.metadata with wsolevaluation's ILSVRC val)"
                )
            raise FileNotFoundError(f"{path} holds no best.pt (it had no val split to choose on)")
        if not file.is_file():
            raise FileNotFoundError(f"{path} holds no {which}.pt")
        return file
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


def _check_best_is_current(file: Path, ckpt: dict) -> None:
    """Refuse a best.pt older than the best epoch its last.pt records (a kill between the two
    writes; resume repairs it)."""
    chosen = (load_checkpoint(file.parent / "last.pt").get("best") or {}).get("epoch")
    held = ckpt.get("epoch", -1) + 1
    if chosen is not None and chosen != held:
        raise ValueError(
            f"{file} holds epoch {held}, but the best epoch was {chosen} (the run was killed "
            f"between two writes): `wsol train --resume --out {file.parent}` repairs it"
        )


def run_finished(run: str | Path, epochs: int | None = None) -> bool:
    """Whether the run folder's last.pt has trained ``epochs`` epochs (default: its own
    config's); False without a last.pt."""
    last = Path(run) / "last.pt"
    if not last.is_file():
        return False
    ckpt = load_checkpoint(last)
    if epochs is None:
        epochs = int(ckpt.get("config", {}).get("epochs", 0) or 0)
    return ckpt["epoch"] + 1 >= epochs


def load_checkpoint_model(
    path: str | Path, device: torch.device | str = "cpu", which: str = "last"
):
    """(model, config dict, checkpoint) from a run folder (its ``which``.pt) or a .pt file."""
    file = checkpoint_path(path, which)
    ckpt = load_checkpoint(file)
    if file.name == "best.pt" and (file.parent / "last.pt").is_file():
        _check_best_is_current(file, ckpt)
    ckpt["path"] = str(file)
    cfg = ckpt["config"]
    model = create_model(
        cfg["model"]["name"],
        ckpt["num_classes"],
        pretrained=None,
        large_feature_map=cfg["model"].get("large_feature_map", False),
    )
    model = method_of(cfg).adapt_model(model)  # the layers the method trained with
    model.load_state_dict(ckpt["model"])
    return model.to(device), cfg, ckpt


def method_of(cfg: dict):
    """The :class:`wsol.methods.Method` a checkpoint's config dict was trained with."""
    section = cfg.get("method", {})
    return create_method(MethodConfig(**section))
