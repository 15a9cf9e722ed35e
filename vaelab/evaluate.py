"""Metrics of a trained model, one code path for the CLI (``python -m vaelab eval``) and the Compare page.

    log_likelihood      log p(x) in nats per image with its standard error: the importance-weighted bound
                        log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x) (vae, cvae, wide binary-vae), or the
                        exact value by enumerating 2^d codes (binary-vae with d <= 16). Gaussian decoders give a
                        log-density of continuous pixels: not comparable with Bernoulli nats.
    reconstruction      BCE (summed over pixels, nats per image) and MSE (mean over pixels) of reconstruct(x) vs x
    probe               accuracy of a logistic regression and of a k-NN classifier trained on standardised train
                        codes and scored on test codes
    active_units        latent units whose posterior mean varies over x: Var_x(E_q[z_j]) > 0.01 (vae, cvae, binary-vae)
    speed               training samples per second and time trained, from the stored history and metadata

``evaluate_checkpoint`` computes the metrics that apply and caches each result in the checkpoint's metadata
(``evaluation``, keyed by metric, settings and data source), so each is computed once. Results are plain dicts.
Progress callbacks are ``on_progress(done, total)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab import losses
from vaelab.analysis import inference
from vaelab.checkpoints import CheckpointError, load_checkpoint, read_metadata, update_metadata
from vaelab.config import ConfigError
from vaelab.data import DataBundle, binarize
from vaelab.training import TEST_DRAW_SEED_OFFSET
from vaelab.variants.base import Variant
from vaelab.variants.binary_vae import MAX_ENUMERABLE_BITS

Progress = Callable[[int, int], None] | None

METRICS = ("log_likelihood", "reconstruction", "probe", "active_units", "speed")
METRIC_TITLES = {"log_likelihood": "log p(x)", "reconstruction": "reconstruction", "probe": "probe accuracy",
                 "active_units": "active units", "speed": "training speed"}
LATENT_VARIABLE_VARIANTS = ("vae", "cvae", "binary-vae")  # a posterior q(z|x) and a prior: log p(x), active units
CACHED_METRICS = ("log_likelihood", "reconstruction", "probe", "active_units")  # speed is read, not computed
CACHE_FIELD = "evaluation"  # the metadata key holding cached results

DEFAULT_K = 100  # importance samples per image
DEFAULT_N = 1000  # test images
MAX_K = 100_000
MAX_N = 1_000_000
IS_SEED = 0  # importance samples, sample grids: reproducible
MAX_WEIGHT_ROWS = 50_000  # K x B decoder evaluations held at once
MAX_IS_BATCH = 500
EXACT_BATCH = 1000
EVAL_BATCH = 1000
PROBE_MAX_TRAIN = 5000
KNN_NEIGHBOURS = 5
LOGISTIC_MAX_ITER = 100  # lbfgs iterations: within 0.5% of the converged accuracy on MNIST codes, several times faster
NEWTON_MAX_COEFFICIENTS = 2000  # code units x classes up to which the probe uses Newton's method
ACTIVE_THRESHOLD = 0.01


# ---------------------------------------------------------------- arguments
def _check_count(name: str, value: Any, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 1 <= value <= high:
        raise ConfigError(name, f"must be a whole number from 1 to {high:,} (got {value!r})")
    return int(value)


def check_settings(k: int, n: int) -> tuple[int, int]:
    """(k, n) as whole numbers in range; ConfigError naming the first bad one."""
    return _check_count("k", k, MAX_K), _check_count("n", n, MAX_N)


def _progress(on_progress: Progress, done: int, total: int) -> None:
    if on_progress is not None:
        on_progress(done, total)


def _mean_and_stderr(values: torch.Tensor | np.ndarray) -> tuple[float, float]:
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    stderr = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), stderr


def _labels_for(model: Any, y: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    return None if y is None or not getattr(model, "uses_labels", False) else y[start:stop]


# ---------------------------------------------------------------- log p(x)
def importance_sampled_log_likelihood(model: Any, x: torch.Tensor, k: int, y: torch.Tensor | None = None,
                                      generator: torch.Generator | None = None, batch_size: int | None = None,
                                      on_progress: Progress = None) -> torch.Tensor:
    """The importance-weighted bound log (1/K) sum_k w_k per image, from ``model.log_importance_weights``.

    Images go in batches and the K samples in chunks so that at most ``MAX_WEIGHT_ROWS`` decoder rows are held
    at once. K = 1 is a one-sample ELBO; the bound rises towards log p(x) as K grows.   x: (N, D) -> (N,)
    """
    k = _check_count("k", k, MAX_K)
    if batch_size is None:
        batch_size = max(1, min(MAX_IS_BATCH, MAX_WEIGHT_ROWS // k))
    k_chunk = max(1, MAX_WEIGHT_ROWS // batch_size)
    n_batches = math.ceil(len(x) / batch_size)
    out = []
    with torch.no_grad():
        for b, start in enumerate(range(0, len(x), batch_size)):
            xb = x[start:start + batch_size]  # (B, D)
            yb = _labels_for(model, y, start, start + batch_size)
            chunks = [model.log_importance_weights(xb, min(k_chunk, k - done), y=yb, generator=generator)
                      for done in range(0, k, k_chunk)]  # each (K_c, B)
            out.append(losses.log_mean_exp(torch.cat(chunks), dim=0).double().cpu())  # (K, B) -> (B,)
            _progress(on_progress, b + 1, n_batches)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def can_enumerate(model: Any) -> bool:
    """True when log p(x) can be computed exactly: a binary latent of at most 16 bits."""
    return hasattr(model, "exact_log_likelihood") and model.code_dim <= MAX_ENUMERABLE_BITS


def exact_log_likelihood(model: Any, x: torch.Tensor, on_progress: Progress = None) -> torch.Tensor:
    """log p(x) by enumerating every latent code, in batches of images.   x: (N, D) -> (N,)"""
    n_batches = math.ceil(len(x) / EXACT_BATCH)
    out = []
    with torch.no_grad():
        for b, start in enumerate(range(0, len(x), EXACT_BATCH)):
            out.append(model.exact_log_likelihood(x[start:start + EXACT_BATCH]).double().cpu())
            _progress(on_progress, b + 1, n_batches)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def decoder_kind(model: Any) -> str:
    """'gaussian' for a Gaussian decoder (log p(x) is then a density), else 'bernoulli'."""
    return "gaussian" if getattr(getattr(model, "config", None), "decoder", "bernoulli") == "gaussian" else "bernoulli"


def log_likelihood(model: Any, x: torch.Tensor, y: torch.Tensor | None = None, k: int = DEFAULT_K,
                   seed: int = IS_SEED, on_progress: Progress = None) -> dict[str, Any]:
    """log p(x) in nats per image (mean and standard error over the images): exact where the latent can be
    enumerated, the importance-weighted bound with K samples otherwise. For label-conditioned models it is
    log p(x | y) with the true labels."""
    k = _check_count("k", k, MAX_K)
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        if can_enumerate(model):
            values, method, used_k = exact_log_likelihood(model, x, on_progress), "exact", None
        elif hasattr(model, "log_importance_weights"):
            device = x.device
            generator = torch.Generator(device=device).manual_seed(seed)
            values = importance_sampled_log_likelihood(model, x, k, y=y, generator=generator,
                                                       on_progress=on_progress)
            method, used_k = "importance", k
        else:
            raise ValueError(f"{type(model).__name__} has no latent-variable likelihood (log_importance_weights)")
    finally:
        if isinstance(model, torch.nn.Module):
            model.train(was_training)
    if not torch.isfinite(values).all():
        raise ValueError("log p(x) is not finite for some images: the model diverged")
    mean, stderr = _mean_and_stderr(values)
    return {"mean": mean, "stderr": stderr, "n": len(values), "k": used_k, "method": method,
            "decoder": decoder_kind(model), "conditional": bool(getattr(model, "uses_labels", False))}


# ---------------------------------------------------------------- reconstruction
def reconstruction_error(model: Variant, x: torch.Tensor, y: torch.Tensor | None = None,
                         on_progress: Progress = None) -> dict[str, Any]:
    """BCE summed over pixels (nats per image) and MSE averaged over pixels of reconstruct(x) against x."""
    bce, mse = [], []
    n_batches = math.ceil(len(x) / EVAL_BATCH)
    with inference.evaluating(model):
        for b, start in enumerate(range(0, len(x), EVAL_BATCH)):
            xb = x[start:start + EVAL_BATCH]
            x_hat = model.reconstruct(xb, _labels_for(model, y, start, start + EVAL_BATCH))  # (B, D)
            bce.append(losses.binary_cross_entropy(x_hat, xb).double().cpu())
            mse.append((losses.squared_error(x_hat, xb) / xb.shape[1]).double().cpu())
            _progress(on_progress, b + 1, n_batches)
    bce_mean, bce_se = _mean_and_stderr(torch.cat(bce))
    mse_mean, mse_se = _mean_and_stderr(torch.cat(mse))
    return {"bce": bce_mean, "bce_stderr": bce_se, "mse": mse_mean, "mse_stderr": mse_se, "n": len(x)}


# ---------------------------------------------------------------- representation quality
def probe_scores(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray,
                 test_labels: np.ndarray, neighbours: int = KNN_NEIGHBOURS) -> dict[str, Any]:
    """Accuracy on the test codes of a logistic regression and a k-NN classifier fitted on the train codes,
    both on codes standardised with the train codes' mean and standard deviation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train_codes, test_codes = np.asarray(train_codes, np.float64), np.asarray(test_codes, np.float64)
    if not (np.isfinite(train_codes).all() and np.isfinite(test_codes).all()):
        raise ValueError("codes: contain NaN or infinite values (did training diverge?)")
    if len(np.unique(train_labels)) < 2:
        raise ValueError("train_labels: a probe needs at least two classes")
    scaler = StandardScaler().fit(train_codes)
    a, b = scaler.transform(train_codes), scaler.transform(test_codes)
    n_coefficients = a.shape[1] * len(np.unique(train_labels))
    # Newton's method converges in a few steps while its Hessian (n_coefficients^2) stays small; lbfgs otherwise
    solver = "newton-cholesky" if n_coefficients <= NEWTON_MAX_COEFFICIENTS else "lbfgs"
    with threadpool_limits(limits=1), warnings.catch_warnings():  # small problems: one BLAS thread is fastest and
        warnings.simplefilter("ignore")  # immune to busy cores; lbfgs stopping at max_iter warns (settled by then)
        logistic = LogisticRegression(solver=solver, max_iter=LOGISTIC_MAX_ITER).fit(a, train_labels)
        knn = KNeighborsClassifier(n_neighbors=min(neighbours, len(a))).fit(a, train_labels)
        logistic_accuracy, knn_accuracy = float(logistic.score(b, test_labels)), float(knn.score(b, test_labels))
    return {"logistic": logistic_accuracy, "knn": knn_accuracy,
            "neighbours": min(neighbours, len(a)), "n_train": len(a), "n_test": len(b),
            "chance": float(np.bincount(np.asarray(test_labels)).max() / len(test_labels))}


def probe_accuracy(model: Variant, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                   test_y: torch.Tensor, on_progress: Progress = None) -> dict[str, Any]:
    """Encode both splits (a label-conditioned model gets the true labels) and score the probes on the codes."""
    _progress(on_progress, 0, 3)
    train_codes = inference.encode_dataset(model, train_x, train_y)
    _progress(on_progress, 1, 3)
    test_codes = inference.encode_dataset(model, test_x, test_y)
    _progress(on_progress, 2, 3)
    scores = probe_scores(train_codes, train_y.cpu().numpy(), test_codes, test_y.cpu().numpy())
    _progress(on_progress, 3, 3)
    return scores


# ---------------------------------------------------------------- active units
def count_active_units(posterior_means: np.ndarray | torch.Tensor, threshold: float = ACTIVE_THRESHOLD
                       ) -> dict[str, Any]:
    """Units j with Var_x(E_q[z_j | x]) > threshold (unbiased variance over the images).   (N, d) -> counts"""
    means = np.asarray(posterior_means.detach().cpu() if isinstance(posterior_means, torch.Tensor)
                       else posterior_means, dtype=np.float64)
    if means.ndim != 2 or len(means) < 2:
        raise ValueError(f"posterior_means: expected (N >= 2, d), got shape {means.shape}")
    variances = means.var(axis=0, ddof=1)  # (d,)
    return {"active": int((variances > threshold).sum()), "units": int(means.shape[1]), "threshold": threshold,
            "variances": [float(v) for v in variances]}


def active_units(model: Variant, x: torch.Tensor, y: torch.Tensor | None = None,
                 threshold: float = ACTIVE_THRESHOLD, on_progress: Progress = None) -> dict[str, Any]:
    """Active latent units of a VAE: its ``encode`` is the posterior mean (the Bernoulli mean for binary latents)."""
    _progress(on_progress, 0, 1)
    result = count_active_units(inference.encode_dataset(model, x, y), threshold)
    _progress(on_progress, 1, 1)
    return result


# ---------------------------------------------------------------- training speed
def training_speed(history: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Samples per second over all train rows (total samples / total seconds) and the time trained."""
    batch_size = (meta.get("config") or {}).get("batch_size")
    samples = seconds = 0.0
    previous_step = 0
    for row in history:
        if row.get("kind") != "train":
            continue
        rate, steps = row.get("samples_per_s"), row["step"] - previous_step
        previous_step = row["step"]
        if batch_size and isinstance(rate, int | float) and rate > 0 and steps > 0:
            samples += steps * batch_size
            seconds += steps * batch_size / rate
    train_time = meta.get("train_time")
    return {"samples_per_s": samples / seconds if seconds > 0 else None,
            "train_time": None if train_time is None else float(train_time),
            "epochs": meta.get("epochs"), "steps": meta.get("steps")}


# ---------------------------------------------------------------- what applies
def applicable_metrics(variant: str) -> tuple[str, ...]:
    if variant in LATENT_VARIABLE_VARIANTS:
        return METRICS
    return tuple(m for m in METRICS if m not in ("log_likelihood", "active_units"))


def model_inputs(images: torch.Tensor, binarize_mode: str, seed: int) -> torch.Tensor:
    """Images as the trained model saw its test set: grey levels, the static threshold, or (dynamic) the
    trainer's one fixed Bernoulli draw."""
    if binarize_mode == "dynamic":
        return binarize(images, "dynamic", generator=torch.Generator().manual_seed(seed + TEST_DRAW_SEED_OFFSET))
    return binarize(images, binarize_mode)


def cache_key(metric: str, settings: Mapping[str, Any]) -> str:
    """'log_likelihood|k=100|n=1000|test=mnist-5k': one entry per metric and settings."""
    return "|".join([metric, *(f"{name}={settings[name]}" for name in sorted(settings))])


def cached_results(meta: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The newest cached result of each metric in a checkpoint's metadata (any settings)."""
    newest: dict[str, dict[str, Any]] = {}
    for entry in (meta.get(CACHE_FIELD) or {}).values():
        if isinstance(entry, dict) and entry.get("metric") in METRICS:
            old = newest.get(entry["metric"])
            if old is None or str(entry.get("computed", "")) >= str(old.get("computed", "")):
                newest[entry["metric"]] = entry
    return newest


def _plan(variant: str, metrics: Iterable[str] | None) -> list[str]:
    allowed = applicable_metrics(variant)
    if metrics is None:
        return list(allowed)
    wanted = list(metrics)
    for m in wanted:
        if m not in METRICS:
            raise ConfigError("metrics", f"unknown metric {m!r}; allowed: {', '.join(METRICS)}")
        if m not in allowed:
            raise ConfigError("metrics", f"{m!r} does not apply to {variant}; it has: {', '.join(allowed)}")
    return wanted


class _Overall:
    """Maps each metric's own (done, total) onto one overall (done, total) over the metrics to compute."""

    STEPS = 1000

    def __init__(self, n_metrics: int, on_progress: Progress):
        self.n, self.on_progress, self.index = max(n_metrics, 1), on_progress, 0

    def part(self) -> Progress:
        index = self.index
        self.index += 1

        def report(done: int, total: int) -> None:
            fraction = (index + (done / total if total else 1.0)) / self.n
            _progress(self.on_progress, round(fraction * self.STEPS), self.STEPS)
        return report

    def finish(self) -> None:
        _progress(self.on_progress, self.STEPS, self.STEPS)


def evaluate_checkpoint(path: str | Path, data: DataBundle, metrics: Iterable[str] | None = None,
                        k: int = DEFAULT_K, n: int = DEFAULT_N, on_progress: Progress = None,
                        recompute: bool = False, device: str = "cpu") -> dict[str, dict[str, Any]]:
    """Every metric that applies to the checkpoint (or those named), on ``n`` evenly spaced test images of
    ``data`` (``k`` importance samples for log p(x)). Results already cached in the checkpoint's metadata for the
    same settings and data are returned without recomputation; new ones are written into it atomically.

    Returns {metric: result dict}; each cached result also carries "metric", "settings" and "computed".
    """
    k, n = check_settings(k, n)
    path = Path(path)
    ckpt = load_checkpoint(path, map_location=device)
    if data.input_dim != ckpt.meta.get("input_dim"):
        raise CheckpointError(f"{path} was trained on images of {ckpt.meta.get('input_dim')} pixels; this data has "
                              f"{data.input_dim}")
    plan = _plan(ckpt.variant, metrics)
    binarize_mode = ckpt.config.binarize
    seed = int((ckpt.trainer_state or {}).get("seed", 0))
    test_idx = inference.spaced_indices(len(data.test), n)
    test_x = model_inputs(data.test.images[test_idx], binarize_mode, seed).to(device)  # (n, D)
    test_y = data.test.labels[test_idx].to(device)  # (n,)
    common = {"test": data.spec["test"], "n": len(test_idx), "binarize": binarize_mode}
    settings = {
        "log_likelihood": {**common, "k": None if can_enumerate(ckpt.model) else k},
        "reconstruction": common,
        "probe": {**common, "train": data.spec["train"], "n_train": min(len(data.train), PROBE_MAX_TRAIN)},
        "active_units": common,
    }
    cache = dict(ckpt.meta.get(CACHE_FIELD) or {})
    results: dict[str, dict[str, Any]] = {}
    todo = [m for m in plan if m in CACHED_METRICS and (recompute or cache_key(m, settings[m]) not in cache)]
    overall = _Overall(len(todo), on_progress)
    for metric in plan:
        if metric == "speed":
            results[metric] = training_speed(ckpt.history, ckpt.meta)
            continue
        key = cache_key(metric, settings[metric])
        if metric not in todo:
            results[metric] = cache[key]
            continue
        report = overall.part()
        if metric == "log_likelihood":
            value = log_likelihood(ckpt.model, test_x, test_y, k=k, on_progress=report)
        elif metric == "reconstruction":
            value = reconstruction_error(ckpt.model, test_x, test_y, on_progress=report)
        elif metric == "probe":
            train_idx = inference.spaced_indices(len(data.train), PROBE_MAX_TRAIN)
            train_x = model_inputs(data.train.images[train_idx], binarize_mode, seed).to(device)
            value = probe_accuracy(ckpt.model, train_x, data.train.labels[train_idx].to(device), test_x, test_y,
                                   on_progress=report)
        else:
            value = active_units(ckpt.model, test_x, test_y, on_progress=report)
        entry = {**value, "metric": metric, "settings": dict(settings[metric]),
                 "computed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        results[metric] = cache[key] = entry
        _store(path, key, entry)
    overall.finish()
    return results


def _store(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Merge one result into the file's current cache (re-read, so results written meanwhile are kept)."""
    try:
        current = dict(read_metadata(path).get(CACHE_FIELD) or {})
        current[key] = entry
        update_metadata(path, **{CACHE_FIELD: current})
    except (CheckpointError, OSError) as error:
        warnings.warn(f"{path}: the result was computed but could not be cached ({error})", stacklevel=3)


# ---------------------------------------------------------------- text
def describe(metric: str, result: Mapping[str, Any]) -> str:
    """One line of text for a metric's result (the CLI prints these; the page shows them as captions)."""
    if metric == "log_likelihood":
        how = "exact, all latent codes enumerated" if result["method"] == "exact" else \
            f"importance sampling, K={result['k']}"
        given = "log p(x|y) with the true labels; " if result.get("conditional") else ""
        text = (f"{result['mean']:.2f} ± {result['stderr']:.2f} nats per image ({given}{how}; "
                f"n={result['n']} test images)")
        if result.get("decoder") == "gaussian":
            text += " — Gaussian decoder: a log-density of continuous pixels, not comparable with Bernoulli nats"
        return text
    if metric == "reconstruction":
        return (f"BCE {result['bce']:.2f} ± {result['bce_stderr']:.2f} nats per image · MSE {result['mse']:.4f} "
                f"± {result['mse_stderr']:.4f} per pixel (n={result['n']})")
    if metric == "probe":
        return (f"logistic regression {result['logistic']:.3f} · {result['neighbours']}-NN {result['knn']:.3f} "
                f"(fitted on {result['n_train']} train codes, scored on {result['n_test']} test codes; "
                f"chance {result['chance']:.2f})")
    if metric == "active_units":
        return (f"{result['active']} of {result['units']} (variance over x of the posterior mean > "
                f"{result['threshold']:g})")
    if metric == "speed":
        rate = "?" if result.get("samples_per_s") is None else f"{result['samples_per_s']:,.0f}"
        seconds = "?" if result.get("train_time") is None else f"{result['train_time']:.1f}"
        return f"{rate} samples/s · trained {seconds} s ({result.get('epochs', '?')} epochs, " \
               f"{result.get('steps', '?')} steps)"
    raise ConfigError("metric", f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
