"""Data-parallel meta-training over several processes (``torchrun``, ``torch.distributed``).

``torchrun --nproc-per-node N -m meta_rl train --config ...`` starts N processes (ranks); each
runs the same trainer with its own batched simulator on its share of the meta-batch, and
:func:`init_world` (which reads torchrun's ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``) joins them
into one process group: NCCL when the learner runs on CUDA, gloo on the CPU. Without torchrun,
or with one process, the :class:`World` is a single process and nothing here communicates.

What the ranks share (docs/distributed.md):

- the task draw and the exploration noise come from streams that every rank holds identically
  (seeded by ``train.seed``); each rank takes its rows (:meth:`World.shard`), so N ranks of
  B/N trials collect the very trials one process of B would;
- every gradient is averaged over the ranks before the step (:func:`average_gradients`),
  together with the non-finite flags, so every step (or skip) is the same on every rank;
- running statistics (observation and reward normalisers, the return scaler) and the PPO
  advantage standardisation use moments of all ranks' data (:func:`global_moments`,
  :func:`all_reduce_sum`);
- the learner's own draws (minibatch permutations, the ELBO's samples) come from a stream per
  rank (:func:`learn_seed`), checkpointed for every rank.

Only rank 0 logs, evaluates and writes checkpoints; metrics are reduced over the ranks
(:func:`reduce_metrics`). After every iteration :func:`check_in_sync` compares a digest of the
networks across ranks and raises if they differ.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from meta_rl.errors import JobStopped, at_exit

__all__ = [
    "DIGESTS_ENV",
    "TIMEOUT_ENV",
    "World",
    "all_reduce_sum",
    "any_rank",
    "average_gradients",
    "broadcast_from_main",
    "broadcast_module",
    "check_in_sync",
    "close_world",
    "exit_process",
    "finish",
    "global_moments",
    "init_world",
    "launched_rank",
    "learn_seed",
    "module_digest",
    "reduce_metrics",
    "restarted_by_torchrun",
    "state_digest",
    "stop_on_sigterm",
]

TIMEOUT_ENV = "METARL_DIST_TIMEOUT_S"
"""Seconds a collective may wait for the other ranks before the job fails (default 1800)."""

DIGESTS_ENV = "METARL_PARAM_DIGESTS"
"""A folder: every rank appends ``{"iteration", "rank", "pid", "digest"}`` of its networks
after each iteration to ``rank<r>.jsonl`` there (a debugging aid; the tests read it)."""

_DEFAULT_TIMEOUT_S = 1800.0
_joined = threading.Event()  # set once this process joined a process group (init_world)
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """The processes of one training job. The default is a single process (no process group).

    ``backend`` is ``"gloo"`` or ``"nccl"`` when ``size > 1``; ``device`` is where the tensors
    of collectives live (the rank's GPU with NCCL, the CPU with gloo).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        """More than one process: collectives run."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    def shard(self, n: int, what: str, unit: int = 1) -> slice:
        """This rank's rows of ``n`` (a meta-batch of ``n / unit`` tasks of ``unit`` rows);
        ``what`` names the config field in the error when the tasks do not split evenly."""
        tasks = n // unit
        if tasks % self.size:
            per = f" ({tasks} tasks of {unit} rollouts)" if unit > 1 else ""
            raise ValueError(
                f"{what}: got {n}{per} for {self.size} processes; allowed: a multiple of "
                f"{self.size * unit} (the processes x maml.rollouts_per_task), so that every "
                "rank runs the same number of whole tasks"
            )
        per_rank = n // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)


def _env_int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except (KeyError, ValueError) as e:
        raise ValueError(
            f"{name}: got {environ.get(name)!r}; torchrun sets WORLD_SIZE, RANK and LOCAL_RANK "
            "together (start the job with torchrun, or unset WORLD_SIZE for one process)"
        ) from e


def launched_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank as torchrun set it (``RANK``), 0 without torchrun: for output that
    one process alone prints."""
    env = os.environ if environ is None else environ
    return int(env.get("RANK", "0") or "0") if int(env.get("WORLD_SIZE", "1") or "1") > 1 else 0


def restarted_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether torchrun (``--max-restarts``) started this job again after a failure
    (``TORCHELASTIC_RESTART_COUNT`` > 0)."""
    env = os.environ if environ is None else environ
    return int(env.get("TORCHELASTIC_RESTART_COUNT", "0") or "0") > 0


def init_world(device: torch.device, environ: Mapping[str, str] | None = None) -> World:
    """Join the process group that torchrun described in the environment; a single-process
    :class:`World` when ``WORLD_SIZE`` is unset or 1.

    ``device`` is the learner's (``train.device`` resolved): CUDA picks NCCL and this rank's GPU
    (``LOCAL_RANK``), the CPU picks gloo. Collectives time out after ``METARL_DIST_TIMEOUT_S``
    seconds (default 1800), so a rank that hangs ends the job instead of blocking it forever.
    """
    env = os.environ if environ is None else environ
    if int(env.get("WORLD_SIZE", "1") or "1") <= 1:
        return World()
    size, rank, local_rank = (_env_int(env, k) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))
    timeout = timedelta(seconds=float(env.get(TIMEOUT_ENV, _DEFAULT_TIMEOUT_S)))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK: got {local_rank} with {torch.cuda.device_count()} CUDA devices on "
                "this machine; start at most that many processes per node (--nproc-per-node)"
            )
        torch.cuda.set_device(local_rank)
        backend, comm_device = "nccl", torch.device("cuda", local_rank)
    else:
        backend, comm_device = "gloo", torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(
            backend, store=_attempt_store(env, timeout), rank=rank, world_size=size, timeout=timeout
        )
    _joined.set()
    at_exit(exit_process)  # the CLI ends a worker through exit_process
    return World(rank, size, local_rank, backend, comm_device)


def _attempt_store(environ: Mapping[str, str], timeout: timedelta) -> dist.Store:
    """The job's key-value store (torchrun's, from ``MASTER_ADDR``/``MASTER_PORT``) seen under
    a prefix of this attempt, ``TORCHELASTIC_RESTART_COUNT``.

    torchrun keeps one store for all the attempts of a job and gives it to the workers without
    a per-attempt prefix, so after ``--max-restarts`` restarts the job, the new processes would
    find the addresses the failed processes published under the same keys: gloo then connects
    to a dead port (``Connection refused``) or waits forever for a peer that is gone. Each
    attempt gets its own keys here.
    """
    store, _, _ = next(dist.rendezvous("env://", timeout=timeout))
    attempt = int(environ.get("TORCHELASTIC_RESTART_COUNT", "0") or "0")
    return dist.PrefixStore(f"metarl/attempt_{attempt}", store)


def finish(world: World) -> None:
    """Wait until every rank is done (rank 0 evaluates and checkpoints last): a rank that left
    the group while rank 0 still used it would end the job with an error."""
    if world.distributed:
        _collective(world, dist.barrier)


def close_world(world: World) -> None:
    """Leave the process group (nothing for a single process)."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int) -> None:
    """End this process now with ``code`` if it ever joined a process group; return if not.

    Python's own exit can abort a torchrun worker (``terminate called without an active
    exception``, exit -6) after a complete run: gloo's worker thread may still be releasing
    the last collectives' tensors, which needs the interpreter that is shutting down (seen in
    gdb: ``ProcessGroupGloo::runLoop`` > ``~AsyncBarrierWork`` > ``~AsyncAllgatherWork`` >
    ``decref_pyobject`` > ``PyThread_exit_thread`` > ``std::terminate``). So a worker flushes
    its output and leaves with ``os._exit``, past the interpreter's teardown. Everything the
    run writes is closed before this (the logger, checkpoints, W&B).
    """
    if not _joined.is_set():
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(code)


@contextlib.contextmanager
def stop_on_sigterm(world: World) -> Iterator[None]:
    """In a distributed run, SIGTERM (torchrun sends it to every process when one fails) raises
    :class:`~meta_rl.errors.JobStopped` in this process, so its ``finally`` blocks run (the logger
    is closed; a checkpoint being written is left out, its temporary file removed).

    Once the process is stopping (the first SIGTERM, or a collective that lost a peer), it
    ignores SIGTERM until it exits: torchrun's SIGTERM races with a rank's own discovery of a
    lost peer, and a second stop must not cut short the cleanup or the ``stopped:`` message
    (with the default action restored, it killed the process before it printed).
    """
    if not world.distributed or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        _ignore_sigterm()
        raise JobStopped(
            f"rank {world.rank} received {signal.Signals(signum).name} (torchrun stops every "
            "process of the job when one fails, or the job was stopped)"
        )

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except BaseException:
        _ignore_sigterm()  # the process is on its way out: exit_process ends it
        raise
    signal.signal(signal.SIGTERM, previous)


def _ignore_sigterm() -> None:
    """Ignore SIGTERM from now on (only the main thread may set a handler)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def learn_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s learner generator: ``seed + 2`` for rank 0 (as a single
    process has always used), an independent stream of ``(seed, rank)`` for the others."""
    if rank == 0:
        return seed + 2
    return int(np.random.SeedSequence([seed, 2, rank]).generate_state(1)[0])


# ---------------------------------------------------------------------- collectives


def _collective(world: World, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Run one collective; a lost peer (gloo and NCCL raise a ``RuntimeError``, e.g.
    "Connection reset by peer", or time out) raises :class:`~meta_rl.errors.JobStopped`."""
    try:
        fn(*args, **kwargs)
    except RuntimeError as e:
        _ignore_sigterm()  # torchrun's SIGTERM follows: this process is already stopping
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise JobStopped(
            f"rank {world.rank} lost the other processes of the job ({first.split('. ')[0]}); "
            "torchrun's report names the one that failed first"
        ) from e


def all_reduce_sum(world: World, x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over the ranks (a new tensor on ``x``'s device; ``x`` itself when
    there is one process)."""
    if not world.distributed:
        return x
    buf = x.detach().to(world.device, copy=True)
    _collective(world, dist.all_reduce, buf)
    return buf.to(x.device)


def any_rank(world: World, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (a decision all ranks must share)."""
    if not world.distributed:
        return flag
    return bool(all_reduce_sum(world, torch.tensor([float(flag)], device=world.device)) > 0)


def average_gradients(world: World, params: Iterable[nn.Parameter], finite: bool) -> bool:
    """Average the gradients of ``params`` over the ranks in place; False on every rank when
    ``finite`` (this rank's loss was finite and back-propagated) is false on any.

    One all-reduce carries the flattened gradients (zeros where this rank has none) and the
    rank's non-finite flag. A non-finite gradient on any rank makes the average non-finite on
    every rank, so the clip norm that follows skips the step everywhere.
    """
    params = list(params)
    if not params:
        return not any_rank(world, not finite)
    ref = params[0]
    parts = [
        p.grad.detach().reshape(-1) if p.grad is not None else ref.new_zeros(p.numel())
        for p in params
    ]
    parts.append(ref.new_tensor([0.0 if finite else 1.0]))
    flat = torch.cat(parts)
    if world.distributed:
        flat = all_reduce_sum(world, flat)
    if float(flat[-1]) > 0:
        return False
    flat = flat[:-1] / world.size
    offset = 0
    for p in params:
        n = p.numel()
        if p.grad is not None:
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n
    return True


def global_moments(world: World, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """Mean and (population) variance over the rows ``(n, d)`` of every rank, and the row
    count, in float64 on ``x``'s device: two passes (the sums, then the squared deviations
    from the global mean). None on every rank when any rank's rows hold a NaN or an inf."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    head = torch.cat(
        [
            x.new_tensor([float(x.shape[0]), float(not bool(torch.isfinite(x).all()))]),
            x.sum(0),
        ]
    )
    head = all_reduce_sum(world, head)
    if float(head[1]) > 0:
        return None
    count = int(head[0])
    if count == 0:
        return x.new_zeros(x.shape[1]), x.new_ones(x.shape[1]), 0
    mean = head[2:] / count
    var = all_reduce_sum(world, ((x - mean) ** 2).sum(0)) / count
    return mean, var, count


def reduce_metrics(
    world: World,
    metrics: dict[str, float],
    *,
    sums: tuple[str, ...] = (),
    maxima: tuple[str, ...] = (),
) -> dict[str, float]:
    """Each metric averaged over the ranks; the keys in ``sums`` summed (e.g. throughput) and
    those in ``maxima`` the largest (e.g. the iteration's wall time). Every rank must hold the
    same keys (they do: they follow the same code path with the same decisions)."""
    if not world.distributed:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=world.device)
    total = all_reduce_sum(world, values).cpu().tolist()
    out = {k: v if k in sums else v / world.size for k, v in zip(keys, total, strict=True)}
    top = [k for k in keys if k in maxima]
    if top:
        buf = torch.tensor([metrics[k] for k in top], dtype=torch.float64, device=world.device)
        _collective(world, dist.all_reduce, buf, op=dist.ReduceOp.MAX)
        out.update(zip(top, buf.cpu().tolist(), strict=True))
    return out


def broadcast_from_main(world: World, fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 and its result sent to every rank; an exception it raises is
    raised on every rank (so a refused checkpoint or run directory ends all of them with the
    same message rather than leaving the others waiting)."""
    if not world.distributed:
        return fn()
    box: list[Any] = [None]
    if world.is_main:
        try:
            box[0] = ("ok", fn())
        except Exception as e:
            box[0] = ("error", e)
    _collective(world, dist.broadcast_object_list, box, src=0, device=world.device)
    status, value = box[0]
    if status == "error":
        raise value
    result: T = value
    return result


def broadcast_module(world: World, module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``module`` (in place)."""
    if not world.distributed:
        return
    with torch.no_grad():
        for t in module.state_dict().values():
            buf = t.to(world.device, copy=True)
            _collective(world, dist.broadcast, buf, src=0)
            t.copy_(buf.to(t.device))


def module_digest(module: nn.Module) -> str:
    """A sha256 of every parameter and buffer of ``module`` (names, shapes and bytes)."""
    return state_digest(module.state_dict())


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """:func:`module_digest` of a state dict (e.g. a checkpoint's ``networks``)."""
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_in_sync(world: World, module: nn.Module, iteration: int, extra: T) -> list[T]:
    """Compare ``module``'s digest across the ranks after ``iteration`` (raise
    ``RuntimeError`` naming the ranks that differ from rank 0) and gather ``extra`` (e.g. each
    rank's generator state) from every rank: the list, by rank. With ``METARL_PARAM_DIGESTS``
    set, every rank also appends its digest to ``rank<r>.jsonl`` in that folder."""
    folder = os.environ.get(DIGESTS_ENV)
    if not world.distributed and not folder:
        return [extra]
    digest = module_digest(module)
    if folder:
        record = {"iteration": iteration, "rank": world.rank, "pid": os.getpid(), "digest": digest}
        path = Path(folder) / f"rank{world.rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
    if not world.distributed:
        return [extra]
    gathered: list[Any] = [None] * world.size
    _collective(world, dist.all_gather_object, gathered, (digest, extra))
    off = [r for r, (d, _) in enumerate(gathered) if d != gathered[0][0]]
    if off:
        raise RuntimeError(
            f"ranks {off} hold other networks than rank 0 after iteration {iteration}: a "
            "state that is not synchronised (a bug); the last checkpoint is from before it"
        )
    return [e for _, e in gathered]
