"""Training runs in worker processes: the batch work of ``pretrain`` and ``sweep``, on local processes or a Ray
cluster.

    specs = [RunSpec("vae", config.to_dict(), "mnist-5k", seed=s, name=f"beta-{s}") for s in range(4)]
    results = run_local(specs, workers=2, on_progress=lambda i, step, total: ...)   # one process per free core
    results = run_ray(specs, address="auto")                                           # the same runs on a cluster

A run is plain data in (``RunSpec``) and plain data out (``RunResult``): the worker loads the data by its source
names, trains the same ``Trainer`` the CLI and the app use, saves the checkpoint (or a rescue copy) and returns the
test terms. Local workers come from a forkserver preloaded with torch (spawn where there is no forkserver), each with
its own RNG and a memory limit set by the operating system (``resource.setrlimit``, Linux): the memory budget plus
what the worker held after its imports, so an oversized run ends that worker, not the machine. Each run has a
process of its own: one that dies is reported as its run's error, with its cause, and the other runs go on.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue as queue_module
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Progress = Callable[[int, int, int], None]  # (run index, steps done, total steps)
PROGRESS_EVERY_S = 0.5
MEMORY_HEADROOM_MB = 512  # above the budget: the data set, the test pass and Python's own growth


@dataclass(frozen=True)
class RunSpec:
    """One training run: what to train, on which data, and where to save it."""

    variant: str
    config: dict[str, Any]  # BaseConfig.to_dict()
    train: str  # data source names, as load_data takes them
    test: str | None = None
    seed: int = 0
    device: str = "cpu"
    name: str | None = None  # checkpoint name under <directory>/<variant>/ (None: not saved)
    directory: str | None = None
    overwrite: bool = True
    label: str = ""  # what the run varies, for tables ("beta=4, seed 1")


@dataclass
class RunResult:
    spec: RunSpec
    test: dict[str, float] = field(default_factory=dict)  # the final test terms (a fixed draw)
    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0  # training time (Trainer.elapsed)
    samples_per_s: float = 0.0
    path: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# ---------------------------------------------------------------- inside a worker
def run_one(spec: RunSpec, index: int = 0, progress: Any = None) -> RunResult:
    """Train one run to the end (in whatever process calls it); ``progress.put((index, step, total))`` now and
    then when a queue is given."""
    from vaelab import checkpoints
    from vaelab.data import load_data
    from vaelab.training import Trainer
    from vaelab.variants import get_variant

    result = RunResult(spec)
    try:
        config = get_variant(spec.variant).config_cls.from_dict(spec.config)
        trainer = Trainer(spec.variant, config, load_data(spec.train, spec.test), seed=spec.seed,
                          device=spec.device)
        last = 0.0
        while not trainer.done and trainer.error is None:
            trainer.advance(max_seconds=PROGRESS_EVERY_S)
            if progress is not None and time.monotonic() - last >= PROGRESS_EVERY_S:
                progress.put((index, trainer.step, trainer.total_steps))
                last = time.monotonic()
        if progress is not None:
            progress.put((index, trainer.step, trainer.total_steps))
        if trainer.error is not None:
            result.error = trainer.error
            return result
        result.test = trainer.evaluate("test")
        result.epochs, result.steps, result.seconds = trainer.epoch, trainer.step, trainer.elapsed
        result.samples_per_s = trainer.step * config.batch_size / max(trainer.elapsed, 1e-9)
        if spec.name is not None:
            path, failure = checkpoints.save_or_rescue(trainer, lambda: checkpoints.save_trainer(
                trainer, spec.name, directory=spec.directory, overwrite=spec.overwrite))
            if failure is not None:
                result.error = failure + ("" if path is None else f"; the run was saved to {path} instead")
            result.path = None if path is None else str(path)
    except MemoryError:
        result.error = "out of memory (the worker's memory limit was reached)"
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        result.error = (f"out of memory: the run needs more than the worker's memory limit ({first})"
                        if "allocate memory" in str(error) else f"RuntimeError: {first}")
    except Exception as error:  # a worker reports every failure as its run's error: the other runs go on
        result.error = f"{type(error).__name__}: {error}"
    return result


def _init_worker(threads: int, memory_limit_mb: float | None) -> None:
    """Each worker: ends with its parent, takes its share of the cores for torch, imports everything a run needs
    (an import under the limit can fail: OpenBLAS hangs when it cannot map its buffers), then limits its address
    space where the OS offers it."""
    _die_with_parent()
    import sklearn.mixture  # noqa: F401  (the AE + Gaussian mixture's)
    import torch

    import vaelab.checkpoints  # noqa: F401
    import vaelab.training  # noqa: F401

    torch.set_num_threads(max(1, threads))
    torch.zeros(1) @ torch.zeros(1)  # start the BLAS threads (and their buffers) before the limit
    if memory_limit_mb is not None:
        limit_address_space(memory_limit_mb)


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when its parent ends (a server killed hard leaves no worker training on)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def limit_address_space(extra_mb: float) -> int | None:
    """Limit this process's address space to what it maps now plus ``extra_mb`` (Linux; elsewhere no limit).
    Returns the limit in bytes, or None where it could not be set."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
        current = pages * os.sysconf("SC_PAGE_SIZE")
        limit = int(current + extra_mb * 2**20)
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        return limit
    except (ImportError, OSError, ValueError):
        return None


# ---------------------------------------------------------------- local processes
def free_cores() -> int:
    """Cores this process may use (its affinity where the OS says), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _context():
    if sys.platform.startswith("linux"):
        ctx = multiprocessing.get_context("forkserver")
        # torch._dynamo: Adam imports it on first use (1 s); sklearn.mixture: the AE + GMM's (1 s)
        ctx.set_forkserver_preload(["torch", "torch._dynamo", "sklearn.mixture", "vaelab.training",
                                    "vaelab.checkpoints", "vaelab.variants"])
        return ctx
    return multiprocessing.get_context("spawn")


def run_local(specs: Sequence[RunSpec], workers: int | None = None, on_progress: Progress | None = None,
              memory_limit_mb: float | None = None, threads: int | None = None) -> list[RunResult]:
    """Run every spec in its own worker process, ``workers`` at once (default: one per free core, at most one per
    run), each with its share of the cores (or ``threads`` torch threads). A worker that dies (killed, out of
    memory) is its run's error; the other runs go on. Results come back in the order of ``specs``."""
    from vaelab.budget import budget_mb

    if not specs:
        return []
    workers = max(1, min(workers or free_cores(), len(specs)))
    threads = threads or max(1, free_cores() // workers)
    limit = budget_mb() + MEMORY_HEADROOM_MB if memory_limit_mb is None else memory_limit_mb
    ctx = _context()
    progress = ctx.Queue()
    results: list[RunResult | None] = [None] * len(specs)
    running: dict[int, tuple[Any, Any]] = {}  # run index -> (process, the parent's end of its pipe)
    waiting = list(range(len(specs)))
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                i = waiting.pop(0)
                receiver, sender = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_worker_main, daemon=True,
                                      args=(specs[i], i, progress, sender, threads, limit, vaelab_environment()))
                with _main_module_hidden():
                    process.start()
                sender.close()  # the child holds its own copy: EOF here when the child is gone
                running[i] = (process, receiver)
            _drain(progress, on_progress)
            for i, (process, receiver) in list(running.items()):
                result = _collect(specs[i], process, receiver)
                if result is not None:
                    results[i] = result
                    del running[i]
            if running:
                time.sleep(0.05)
        _drain(progress, on_progress)
    finally:
        for process, _ in running.values():  # interrupted (Ctrl-C): no worker outlives the caller
            process.kill()
    return [r if r is not None else RunResult(s, error="no result") for r, s in zip(results, specs, strict=True)]


# Lock rules: _hidden_lock guards the three lines below and __main__'s two attributes; held only to read or set
# them, never while a process starts (the hiding spans the start, the lock does not) or another lock is taken.
_hidden_lock = threading.Lock()
_hidden_depth = 0  # threads inside _main_module_hidden now
_hidden_saved: dict[str, Any] = {}


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """multiprocessing re-imports the parent's ``__main__`` in a forkserver or spawned worker. Ours need nothing from
    it, and a script that runs code when imported (Streamlit runs app.py as __main__; a user's script without a
    main guard) would run again there: hide it while a worker starts. Threads may start workers at once (the
    forkserver's warm-up beside a class preparation): it stays hidden until the last of them is done (a thread that
    restored it while another was starting its worker had that worker run app.py and exit with status 1)."""
    global _hidden_depth, _hidden_saved
    main = sys.modules.get("__main__")
    with _hidden_lock:
        if _hidden_depth == 0:
            _hidden_saved = {name: getattr(main, name) for name in ("__file__", "__spec__") if hasattr(main, name)}
            for name in _hidden_saved:
                setattr(main, name, None)
        _hidden_depth += 1
    try:
        yield
    finally:
        with _hidden_lock:
            _hidden_depth -= 1
            if _hidden_depth == 0:
                for name, value in _hidden_saved.items():
                    setattr(main, name, value)


def vaelab_environment() -> dict[str, str]:
    """This process's VAELAB_* settings (checkpoint and data folders, the memory budget, ...)."""
    return {k: v for k, v in os.environ.items() if k.startswith("VAELAB_")}


def _worker_main(spec: RunSpec, index: int, progress: Any, sender: Any, threads: int, limit_mb: float,
                 environment: dict[str, str]) -> None:
    # a forkserver's children inherit the environment the forkserver started with: take the caller's of now
    for key in [k for k in os.environ if k.startswith("VAELAB_")]:
        del os.environ[key]
    os.environ.update(environment)
    _init_worker(threads, limit_mb)
    sender.send(run_one(spec, index, progress))
    sender.close()


def _collect(spec: RunSpec, process: Any, receiver: Any) -> RunResult | None:
    """The run's result once its worker sent it, an error once the worker died without one, else None."""
    if receiver.poll():
        try:
            result = receiver.recv()
        except (EOFError, OSError):
            result = None
        process.join(timeout=5)
        if result is not None:
            return result
    elif process.is_alive():
        return None
    process.join(timeout=5)
    return RunResult(spec, error=f"its worker process {death_cause(process.exitcode)}")


def death_cause(exitcode: int | None) -> str:
    """A worker's end in words: killed by a signal (SIGKILL: out of memory, or by hand) or an exit status."""
    import signal

    if exitcode is None:
        return "did not end"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.Signals._value2member_map_ else str(-exitcode)
        hint = " (the system's out-of-memory killer, or killed by hand)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {exitcode} before sending its result"


def _drain(progress_queue: Any, on_progress: Progress | None) -> None:
    while True:
        try:
            index, step, total = progress_queue.get_nowait()
        except (queue_module.Empty, EOFError, OSError):
            return
        if on_progress is not None:
            on_progress(index, step, total)


# ---------------------------------------------------------------- a Ray cluster
RAY_ENV = "VAELAB_RAY_ADDRESS"


def run_ray(specs: Sequence[RunSpec], address: str, cpus_per_run: float = 1.0,
            on_progress: Progress | None = None) -> list[RunResult]:
    """Run every spec as a Ray task on the cluster at ``address`` ("auto", "ray://host:10001", or "local" for a
    Ray started here). Needs ``pip install ray``. Progress is reported as each run finishes. A missing Ray or an
    unreachable cluster is a ConfigError naming --ray."""
    from vaelab.config import ConfigError

    try:
        import ray
    except ImportError:
        raise ConfigError("--ray", "needs the optional Ray package: pip install 'ray[default]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "local" else address, ignore_reinit_error=True,
                     log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError, OSError) as e:  # no cluster there, a bad address
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ConfigError("--ray", f"cannot reach a Ray cluster at {address!r} ({first}); start one with "
                                       "`ray start --head`, or give 'local'") from None
    remote = ray.remote(num_cpus=cpus_per_run)(run_one)
    refs = [remote.remote(spec, i) for i, spec in enumerate(specs)]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[RunResult | None] = [None] * len(specs)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            i = index[ref]
            try:
                results[i] = ray.get(ref)
            except Exception as error:  # a task whose worker died, and the like
                results[i] = RunResult(specs[i], error=f"{type(error).__name__}: {error}")
            if on_progress is not None:
                r = results[i]
                on_progress(i, r.steps, r.steps if r.ok else 0)
    return [r if r is not None else RunResult(s, error="no result") for r, s in zip(results, specs, strict=True)]


def run(specs: Sequence[RunSpec], workers: int | None = None, ray_address: str | None = None,
        on_progress: Progress | None = None) -> list[RunResult]:
    """Local worker processes, or Ray when an address is given (or set in ``VAELAB_RAY_ADDRESS``)."""
    address = ray_address or os.environ.get(RAY_ENV) or None
    if address:
        return run_ray(specs, address, on_progress=on_progress)
    return run_local(specs, workers=workers, on_progress=on_progress)


def sweep_specs(variant: str, base: dict[str, Any], grid: dict[str, list[Any]], seeds: int, train: str,
                test: str | None, device: str = "cpu", directory: str | None = None,
                prefix: str = "sweep") -> list[RunSpec]:
    """Every combination of the grid's values (field -> values), each with seeds 0..seeds-1."""
    import itertools

    names = list(grid)
    specs = []
    for values in itertools.product(*(grid[n] for n in names)):
        settings = dict(zip(names, values, strict=True))
        for seed in range(seeds):
            label = ", ".join(f"{n}={_text(v)}" for n, v in settings.items()) + f", seed {seed}"
            name = prefix + "-" + "-".join(f"{n}{_text(v)}" for n, v in settings.items()) + f"-s{seed}"
            specs.append(RunSpec(variant, {**base, **settings}, train, test, seed, device, _safe(name), directory,
                                 True, label))
    return specs


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:80]
