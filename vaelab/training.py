"""The Trainer: owns model, optimizer, RNG and history, and advances by a bounded amount of work per call.

Model-agnostic (any registered variant): each step calls ``model.training_objective(x, y)``, backpropagates the
objective and reports every term. Data live in memory as tensors; an epoch is a fresh permutation from the
trainer's own generator, sliced into batches. Model-internal randomness (reparameterisation, noise) draws from a
global RNG state that the trainer keeps to itself, so training is reproducible under a seed, resumable bit for
bit (see ``state_dict``) and neither disturbs nor is disturbed by other code running between chunks. Trainers in
other threads (two app sessions) take turns with that global state (``GLOBAL_RNG_LOCK``), one chunk at a time.
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from vaelab.budget import check_budget
from vaelab.config import BaseConfig
from vaelab.data import DataBundle, binarize
from vaelab.variants import build_model

STATE_VERSION = 1
EVAL_BATCH_SIZE = 1000
TEST_DRAW_SEED_OFFSET = 7919  # the fixed dynamic-binarisation draw of the test set uses seed + this
# torch's global RNG is one per process: a trainer holds this lock while the global state is its own stream, so
# trainers in two threads (two app sessions) never draw from each other's stream.
# Lock rules: it is held across a chunk of training in this process (the one exception to "never across a call
# that may block": the global RNG it guards is in use for the whole chunk). Only in-process trainers take it (the
# CLI, the lessons, a page's reference net, tests; a worker process has its own); nothing run under it takes another
# lock of the server, so it is innermost but for re-entry by the same trainer (an RLock).
GLOBAL_RNG_LOCK = threading.RLock()
# "bfloat16" (opt-in; float32 is the default) runs forward passes and losses under torch.autocast: on a CPU with bf16
# matrix units epochs of the pytorch-example VAE ran 1.4-1.5x faster, final test loss within 0.1 nat of float32
# after 10 epochs (benchmarks/bench_training.py --bf16; figures in benchmarks/README.md).
PRECISIONS = ("float32", "bfloat16")


class Trainer:
    """Train one variant on one DataBundle. ``advance`` does a bounded chunk of work and returns new history rows.

    History rows are plain dicts: ``{"kind": "train"|"test", "step", "epoch" (float), "time" (training seconds so
    far), "samples_per_s" (train rows only), <every loss term>: float}``. Train rows average the terms over up to
    ``log_every`` steps; a test row (the test split's terms) is appended at each epoch end.
    """

    def __init__(self, variant: str, config: BaseConfig, data: DataBundle, seed: int = 0, device: str = "cpu",
                 log_every: int = 20, precision: str = "float32"):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: must be a whole number >= 0 (got {seed!r})")
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
            raise ValueError(f"log_every: must be a whole number >= 1 (got {log_every!r})")
        if precision not in PRECISIONS:
            raise ValueError(f"precision: must be one of {', '.join(PRECISIONS)} (got {precision!r})")
        if len(data.train.images) == 0:
            raise ValueError("data: the training split is empty")
        self.variant = variant
        self.config = config
        self.data = data
        self.seed = seed
        self.device = torch.device(device)
        self.log_every = log_every
        self.precision = precision

        check_budget(variant, config, data.input_dim, data.n_classes)  # ConfigError before anything is allocated
        # Build the model under the seed without touching the caller's global RNG; the state the global RNG is
        # left in becomes the trainer's own stream for model-internal randomness.
        with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(seed)
            self.model = build_model(variant, config, data.input_dim, data.n_classes).to(self.device)
            self._rng_state = torch.get_rng_state()
            self._cuda_rng_state = torch.cuda.get_rng_state(self.device) if self._on_cuda else None
        self.model.train()
        # fused: one kernel for all parameters, about twice as fast a step on CPU (CPU and CUDA support it)
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(_parameter_groups(self.model, config.weight_decay), lr=config.lr,
                                          fused=fused)
        self.generator = torch.Generator().manual_seed(seed)  # permutations and dynamic binarisation (CPU)

        self.history: list[dict[str, Any]] = []
        self.step = 0
        self.epoch = 0  # completed epochs
        self.elapsed = 0.0  # seconds spent in advance()
        self.error: str | None = None

        self._train_y = data.train.labels.to(self.device)
        self._test_y = data.test.labels.to(self.device)
        self._static_train_x = self._binarize_fixed(data.train.images, "train")  # (N, D) on device
        self._test_x = self._binarize_fixed(data.test.images, "test")  # (M, D) on device
        self._epoch_train_x = self._static_train_x  # the current epoch's (maybe freshly drawn) training images
        with torch.no_grad():
            self.model.prepare(self._static_train_x, self._train_y)
        self._perm: torch.Tensor | None = None  # (N,) order of the current epoch; None between epochs
        self._pos = 0  # examples of the current epoch already used
        self._epoch_start_generator_state: torch.Tensor | None = None
        self._pending = _Pending()
        self._snapshot: dict[str, Any] | None = None
        self._rng_live = False  # True inside _own_rng: the trainer's stream is then the global RNG itself

    # -- sizes and progress ----------------------------------------------------------------------------
    @property
    def n_train(self) -> int:
        return len(self.data.train.images)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.config.batch_size)

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.steps_per_epoch

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps)

    # -- training --------------------------------------------------------------------------------------
    def advance(self, max_steps: int | None = None, max_seconds: float | None = None) -> list[dict[str, Any]]:
        """Train for at most ``max_steps`` steps and/or about ``max_seconds`` (at least one step); with neither
        limit, to the end of the current epoch. Returns the history rows added. A no-op when done or after an
        error (see ``error`` / ``clear_error``)."""
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"max_steps: must be a whole number >= 1 (got {max_steps!r})")
        if max_seconds is not None and not (isinstance(max_seconds, int | float) and max_seconds > 0):
            raise ValueError(f"max_seconds: must be a number > 0 (got {max_seconds!r})")
        if self.error is not None or self.done:
            return []
        if max_steps is None and max_seconds is None:
            max_steps = self.steps_per_epoch - self._steps_into_epoch()

        first_row = len(self.history)
        self._take_snapshot()
        started = time.perf_counter()
        steps = 0
        self.model.train()
        with self._own_rng():
            while not self.done:
                if steps > 0 and max_seconds is not None and time.perf_counter() - started >= max_seconds:
                    break
                if not self._train_step():
                    break
                steps += 1
                if self._pos >= self.n_train and not self._end_epoch():
                    break
                if max_steps is not None and steps >= max_steps:
                    break
            if self.error is None and not self._weights_finite():  # a finite loss, then a step to inf / nan
                self._fail(f"after step {self.step}: a weight became inf or nan")
            if self.error is None and self._pending.steps:
                self._flush_train_row()
        return self.history[first_row:]

    def run(self, on_rows: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        """Advance until done or an error; ``on_rows(rows)`` after each chunk (e.g. a CLI progress bar)."""
        while not self.done and self.error is None:
            rows = self.advance()
            if on_rows is not None and rows:
                on_rows(rows)

    def clear_error(self, lr: float | None = None) -> None:
        """Forget a stopped run's error so that ``advance`` works again; optionally with a new learning rate."""
        if lr is not None:
            self.config = self.config.replace(lr=lr)  # validates the value
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr
        self.error = None

    def _steps_into_epoch(self) -> int:
        return self.step - self.epoch * self.steps_per_epoch

    def _start_epoch(self) -> None:
        self._epoch_start_generator_state = self.generator.get_state()
        self._epoch_train_x = self._draw_epoch_train_x()
        self._perm = torch.randperm(self.n_train, generator=self.generator).to(self.device)  # (N,)
        self._pos = 0

    def _draw_epoch_train_x(self) -> torch.Tensor:
        if self.config.binarize != "dynamic":
            return self._static_train_x
        return binarize(self.data.train.images, "dynamic", generator=self.generator).to(self.device)

    def _train_step(self) -> bool:
        """One optimizer step on the next batch. False (and ``error`` set) when the loss is not finite."""
        if self._perm is None:
            self._start_epoch()
        t0 = time.perf_counter()
        self.model.set_training_progress(self.step / self.steps_per_epoch)
        idx = self._perm[self._pos:self._pos + self.config.batch_size]  # (B,)
        x, y = self._epoch_train_x[idx], self._train_y[idx]  # (B, D), (B,)
        with self._autocast():
            objective, terms = self.model.training_objective(x, y)
        values = {name: _as_float(v) for name, v in terms.items()}
        bad = _first_non_finite({**values, "training objective": _as_float(objective)})
        if bad is not None:
            self._fail(f"at step {self.step + 1}: the {bad[0]} term became {bad[1]}")
            return False
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer.step()
        self._pos += len(idx)
        self.step += 1
        seconds = time.perf_counter() - t0
        self.elapsed += seconds
        self._pending.add(values, len(idx), seconds)
        if self.step % self.log_every == 0:
            self._flush_train_row()
        return True

    def _end_epoch(self) -> bool:
        """Flush, run the model's epoch hook, evaluate the test split. False (and ``error`` set) on a non-finite
        test term."""
        t0 = time.perf_counter()
        if self._pending.steps:
            self._flush_train_row()
        self.epoch += 1
        self._perm = None
        self._pos = 0
        self._epoch_start_generator_state = None
        self.model.on_epoch_end(self._epoch_train_x, self._train_y)
        terms = self._test_terms(self._test_x, self._test_y)
        self.model.train()
        self.elapsed += time.perf_counter() - t0
        bad = _first_non_finite(terms)
        if bad is not None:
            self._fail(f"at the end of epoch {self.epoch}: the test {bad[0]} term became {bad[1]}")
            return False
        if not self._weights_finite():  # never keep a snapshot that holds inf / nan
            self._fail(f"at the end of epoch {self.epoch}: a weight became inf or nan")
            return False
        self.history.append({"kind": "test", "step": self.step, "epoch": float(self.epoch),
                             "time": self.elapsed, **terms})
        self._take_snapshot()
        return True

    def _flush_train_row(self) -> None:
        p = self._pending
        self.history.append({"kind": "train", "step": self.step, "epoch": self.step / self.steps_per_epoch,
                             "time": self.elapsed, "samples_per_s": p.samples / max(p.seconds, 1e-9),
                             **{name: total / p.steps for name, total in p.sums.items()}})
        self._pending = _Pending()

    # -- divergence: snapshot and restore --------------------------------------------------------------
    def _take_snapshot(self) -> None:
        self._snapshot = self.state_dict(include_history=False) | {"history_len": len(self.history)}

    def _weights_finite(self) -> bool:
        tensors = itertools.chain(self.model.parameters(), self.model.buffers())
        return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())

    def _fail(self, what: str) -> None:
        snap = self._snapshot
        assert snap is not None, "a snapshot is taken before any step"
        self._load(snap)
        del self.history[snap["history_len"]:]
        self._pending = _Pending()
        self.error = (f"Training stopped {what}. The weights were restored to the last finite state "
                      f"(step {self.step}); lower the learning rate (lr={self.config.lr:g}) and try again.")

    # -- RNG isolation ---------------------------------------------------------------------------------
    @property
    def _on_cuda(self) -> bool:
        return self.device.type == "cuda"

    def _rng_devices(self) -> list:
        return [self.device] if self._on_cuda else []

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run with the trainer's own global RNG state; the caller's state is untouched afterwards."""
        with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=self._rng_devices()):
            self._rng_live = True
            self._put_rng_state()
            try:
                yield
            finally:
                self._sync_rng_state()
                self._rng_live = False

    def _put_rng_state(self) -> None:
        torch.set_rng_state(self._rng_state)
        if self._on_cuda:
            torch.cuda.set_rng_state(self._cuda_rng_state, self.device)

    def _sync_rng_state(self) -> None:
        """Inside _own_rng, copy the live global state into the trainer's saved state."""
        if self._rng_live:
            self._rng_state = torch.get_rng_state()
            if self._on_cuda:
                self._cuda_rng_state = torch.cuda.get_rng_state(self.device)

    def _autocast(self):
        """bfloat16 autocast for forward passes and losses when ``precision`` asks for it (weights stay float32)."""
        if self.precision == "float32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # -- evaluation ------------------------------------------------------------------------------------
    def evaluate(self, split: str = "test", max_examples: int | None = None) -> dict[str, float]:
        """Per-example average of every loss term over ``split`` ("test" or "train"), in eval mode.

        ``max_examples`` takes an evenly spaced subset. Model randomness uses a fixed seed, so repeated calls
        agree, and neither the trainer's nor the caller's RNG stream moves."""
        if split not in ("train", "test"):
            raise ValueError(f"split: must be 'train' or 'test' (got {split!r})")
        x, y = (self._test_x, self._test_y) if split == "test" else (self._epoch_train_x, self._train_y)
        if max_examples is not None:
            if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
                raise ValueError(f"max_examples: must be a whole number >= 1 (got {max_examples!r})")
            if max_examples < len(x):
                idx = torch.arange(max_examples, device=x.device) * len(x) // max_examples  # (n,) evenly spaced
                x, y = x[idx], y[idx]
        terms = self._test_terms(x, y)
        self.model.train()
        return terms

    def _test_terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """_evaluate_tensors with the model's randomness (noise, latent draws) from a fixed seed: an epoch's test row,
        ``evaluate`` and a restored checkpoint's evaluation give the same figure for the same weights. The
        trainer's own stream does not move."""
        with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(self.seed)
            return self._evaluate_tensors(x, y)

    def _evaluate_tensors(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Terms averaged per example over all of x (B, D), y (B,). Leaves the model in eval mode."""
        self.model.eval()
        sums: dict[str, float] = {}
        with torch.no_grad(), self._autocast():
            for start in range(0, len(x), EVAL_BATCH_SIZE):
                xb, yb = x[start:start + EVAL_BATCH_SIZE], y[start:start + EVAL_BATCH_SIZE]
                for name, value in self.model.loss(xb, yb).items():
                    sums[name] = sums.get(name, 0.0) + _as_float(value) * len(xb)
        return {name: total / len(x) for name, total in sums.items()}

    # -- binarisation ----------------------------------------------------------------------------------
    def _binarize_fixed(self, images: torch.Tensor, split: str) -> torch.Tensor:
        """Train or test images as the whole run sees them: grey levels, a static threshold, or (test, dynamic)
        one fixed draw."""
        mode = self.config.binarize
        if mode == "none":
            out = images
        elif mode == "static" or split == "train":
            out = binarize(images, "static") if mode == "static" else images
        else:
            draw = torch.Generator().manual_seed(self.seed + TEST_DRAW_SEED_OFFSET)
            out = binarize(images, "dynamic", generator=draw)
        return out.to(self.device)

    # -- state -----------------------------------------------------------------------------------------
    def state_dict(self, include_history: bool = True) -> dict[str, Any]:
        """Everything needed to resume exactly, as plain data (loads with ``torch.load(weights_only=True)``)."""
        self._sync_rng_state()
        state: dict[str, Any] = {
            "state_version": STATE_VERSION,
            "variant": self.variant,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "log_every": self.log_every,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "step": self.step,
            "epoch": self.epoch,
            "elapsed": self.elapsed,
            "error": self.error,
            "generator_state": self.generator.get_state(),
            "rng_state": self._rng_state.clone(),
            "cuda_rng_state": None if self._cuda_rng_state is None else self._cuda_rng_state.clone(),
            "permutation": None if self._perm is None else self._perm.cpu().clone(),
            "position": self._pos,
            "epoch_start_generator_state": self._epoch_start_generator_state,
        }
        if include_history:
            state["history"] = [dict(row) for row in self.history]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()`` output. The trainer must have the same variant, config and training set."""
        if state.get("state_version") != STATE_VERSION:
            raise ValueError(f"trainer state version {state.get('state_version')!r}; this vaelab reads "
                             f"{STATE_VERSION}")
        if state["variant"] != self.variant:
            raise ValueError(f"trainer state is for variant {state['variant']!r}, this trainer is {self.variant!r}")
        # through the config class, so a state saved before a field existed reads it as the field's default
        saved, mine = type(self.config).from_dict(state["config"]).to_dict(), self.config.to_dict()
        changed = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k) and k != "lr")
        if changed:
            raise ValueError(f"trainer state has a different config (field {changed[0]}: saved "
                             f"{saved.get(changed[0])!r}, here {mine.get(changed[0])!r})")
        perm = state["permutation"]
        if perm is not None and len(perm) != self.n_train:
            raise ValueError(f"trainer state was saved with {len(perm)} training images, this data has "
                             f"{self.n_train}; resume needs the same training set")
        if saved.get("lr") != mine.get("lr"):
            self.clear_error(lr=saved["lr"])
        self._load(state)
        self.history = [dict(row) for row in state["history"]]
        self.log_every = state["log_every"]

    def _load(self, state: dict[str, Any]) -> None:
        """Restore everything but the history (shared by resume and divergence recovery)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.step = state["step"]
        self.epoch = state["epoch"]
        self.elapsed = state["elapsed"]
        self.error = state["error"]
        self._rng_state = state["rng_state"].clone()
        if self._on_cuda and state["cuda_rng_state"] is not None:
            self._cuda_rng_state = state["cuda_rng_state"].clone()
        if self._rng_live:  # restoring a snapshot mid-advance: the live stream must follow
            self._put_rng_state()
        if state["seed"] != self.seed:
            self.seed = state["seed"]
            self._test_x = self._binarize_fixed(self.data.test.images, "test")
        perm = state["permutation"]
        self._epoch_start_generator_state = state["epoch_start_generator_state"]
        if perm is None:
            self._perm, self._epoch_train_x = None, self._static_train_x
        else:
            if self.config.binarize == "dynamic":  # redraw this epoch's images from the epoch's generator state
                self.generator.set_state(self._epoch_start_generator_state)
                self._epoch_train_x = self._draw_epoch_train_x()
            self._perm = perm.to(self.device).clone()
        self._pos = state["position"]
        self.generator.set_state(state["generator_state"])
        self._pending = _Pending()


class _Pending:
    """Running sums of the steps not yet written as a train row."""

    def __init__(self) -> None:
        self.steps = 0
        self.samples = 0
        self.seconds = 0.0
        self.sums: dict[str, float] = {}

    def add(self, values: dict[str, float], samples: int, seconds: float) -> None:
        self.steps += 1
        self.samples += samples
        self.seconds += seconds
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Adam's parameter groups: weight matrices (2-D and up) with ``weight_decay``, biases and vectors without.
    The order of parameters is the model's, so optimizer states saved before stay aligned."""
    params = list(model.parameters())
    if weight_decay == 0:
        return [{"params": params}]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def _as_float(value: torch.Tensor | float) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _first_non_finite(values: dict[str, float]) -> tuple[str, float] | None:
    for name, value in values.items():
        if not math.isfinite(value):
            return name, value
    return None
