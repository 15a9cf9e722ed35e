"""Per variant, the measure that shows its lesson, its goal, and a check that trains the default and measures it.

    report = check_lesson("sparse", data, seed=0)
    print(report.passed, [str(c) for c in report.checks])

Every measure is computed from the trained model (never from history strings) on test images, and is a pure
function of arrays where it can be (``share_in_band``, ``active_share``, ``dead_unit_share``, ...), so it can be
tested on hand-made cases. A lesson that compares with "the same net without the penalty" trains that net too,
with the same seed, data and epochs (its time is reported separately). Generated pictures are judged by a small
classifier trained on the training split (``vaelab.digit_judge``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vaelab import losses
from vaelab.config import BaseConfig
from vaelab.data import DataBundle
from vaelab.digit_judge import train_judge
from vaelab.training import Trainer
from vaelab.variants import VARIANTS, get_variant

PROBE_IMAGES = 1000  # test images a measure uses (evenly spaced over the test split)
JACOBIAN_IMAGES = 200  # the Jacobian by autograd costs one backward pass per code unit
GENERATED = 500  # generated images a judged measure draws
KNN = 5
MEASURE_SEED = 1234  # fixed draws (noise, prior samples) of every measure


# ---------------------------------------------------------------- results
@dataclass(frozen=True)
class Check:
    """One measured figure against its goal, e.g. "units with rho_hat in [rho/2, 2 rho]" 0.93 >= 0.80."""

    name: str
    value: float
    op: str  # ">=" or "<="
    goal: float

    @property
    def passed(self) -> bool:
        if not math.isfinite(self.value):
            return False
        return self.value >= self.goal if self.op == ">=" else self.value <= self.goal

    def __str__(self) -> str:
        return f"{self.name} = {self.value:.3g} (goal {self.op} {self.goal:g})"


@dataclass
class LessonReport:
    variant: str
    lesson: str
    checks: list[Check]
    notes: dict[str, float] = field(default_factory=dict)  # context figures (the companion's value, judge accuracy)
    train_seconds: float = 0.0  # the default model's training time (Trainer.elapsed)
    companion_seconds: float = 0.0  # the reference net's training time, where the lesson needs one
    epochs: int = 0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.passed for c in self.checks)


# ---------------------------------------------------------------- pure measures
def share_in_band(rho_hat: np.ndarray | torch.Tensor, rho: float) -> float:
    """Share of units whose mean activation lies in [rho / 2, 2 rho]."""
    r = np.asarray(rho_hat, dtype=np.float64)
    return float(((r >= rho / 2) & (r <= 2 * rho)).mean())


def active_share(codes: np.ndarray | torch.Tensor, threshold: float = 0.5) -> float:
    """Mean over images of the share of units above ``threshold`` (for sigmoid units: "switched on").
    codes: (n, units)"""
    return float((np.asarray(codes) > threshold).mean())


def digit_score(probabilities: np.ndarray | torch.Tensor) -> float:
    """exp(mean over images of KL(p(y|x) || p(y))), p(y) the mean of the rows: the Inception score with a digit
    classifier. 1 when every image gets the same class distribution (all alike, or all unclear); the number of
    classes when each image is one clear digit and all digits come equally often. probabilities: (n, classes)"""
    p = np.asarray(probabilities, dtype=np.float64)
    marginal = p.mean(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(marginal)), 0.0)
    return float(np.exp(terms.sum(axis=1).mean()))


def dead_unit_share(codes: np.ndarray | torch.Tensor) -> float:
    """Share of code units that are zero for every image. codes: (n, units)"""
    c = np.asarray(codes)
    return float((~(c != 0).any(axis=0)).mean())


def class_coverage(labels: np.ndarray | torch.Tensor, n_classes: int, min_share: float) -> int:
    """Number of classes that receive at least ``min_share`` of the labels."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)
    return int((counts >= min_share * counts.sum()).sum())


def normalised_entropy(labels: np.ndarray | torch.Tensor, n_classes: int) -> float:
    """Entropy of the label histogram divided by log(n_classes): 0 for one class, 1 for all classes equally."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / math.log(n_classes))


def variance_kept(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """1 - sum |x - x_hat|^2 / sum |x - mean image|^2: the share of the pixel variance a reconstruction keeps."""
    residual = (x - x_hat).pow(2).sum()
    spread = (x - x.mean(dim=0, keepdim=True)).pow(2).sum()
    return float(1.0 - residual / spread)


# ---------------------------------------------------------------- helpers
def probe_images(data: DataBundle, n: int = PROBE_IMAGES) -> tuple[torch.Tensor, torch.Tensor]:
    """n evenly spaced test images (n, D) and labels (n,) (all when the split is smaller)."""
    m = len(data.test)
    idx = torch.arange(min(n, m)) * m // min(n, m)
    return data.test.images[idx], data.test.labels[idx]


def _model_inputs(trainer: Trainer, x: torch.Tensor) -> torch.Tensor:
    """Test images as the model was trained to see them (evaluate.model_inputs: threshold or the seeded draw)."""
    from vaelab.evaluate import model_inputs

    return model_inputs(x, trainer.config.binarize, trainer.seed)


def train(variant: str, config: BaseConfig, data: DataBundle, seed: int = 0, device: str = "cpu") -> Trainer:
    """Train ``config`` to the end (chunk by chunk, as the CLI does)."""
    trainer = Trainer(variant, config, data, seed=seed, device=device)
    trainer.run()
    if trainer.error is not None:
        raise RuntimeError(trainer.error)
    return trainer


@torch.no_grad()
def _encode(model, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    model.eval()
    return model.encode(x.to(model.device), y if y is None else y.to(model.device)).cpu()


def mean_jacobian_norm(model, x: torch.Tensor) -> float:
    """Mean ||J_f(x)||_F^2 of the model's encoder (before any code transform) by autograd. x: (n, D)"""
    model.eval()
    return float(losses.jacobian_frobenius_sq(model.encoder, x.to(model.device), create_graph=False).mean())


# ---------------------------------------------------------------- one measure per variant
Context = dict[str, Any]  # what a measure may use: trainer, data, seed, device, and notes/companion time to fill


def _measure_ae(ctx: Context) -> list[Check]:
    trainer, data = ctx["trainer"], ctx["data"]
    x, _ = probe_images(data)
    x_in = _model_inputs(trainer, x)
    with torch.no_grad():
        trainer.model.eval()
        x_hat = trainer.model.reconstruct(x_in).cpu()
    return [Check(f"share of the pixel variance the {trainer.model.code_dim}-unit code keeps",
                  variance_kept(x_in, x_hat), ">=", 0.8)]


def _measure_denoising(ctx: Context) -> list[Check]:
    from vaelab.variants.denoising import corrupt

    trainer, data = ctx["trainer"], ctx["data"]
    c = trainer.config
    x, _ = probe_images(data)
    x = _model_inputs(trainer, x)
    noisy = corrupt(x, c.corruption, c.noise_level, generator=torch.Generator().manual_seed(MEASURE_SEED))
    with torch.no_grad():
        trainer.model.eval()
        denoised = trainer.model.reconstruct(noisy).cpu()
    noisy_error = float((noisy - x).pow(2).sum(dim=1).mean())
    denoised_error = float((denoised - x).pow(2).sum(dim=1).mean())
    ctx["notes"]["squared error of the noisy input"] = noisy_error
    ctx["notes"]["squared error of the denoised output"] = denoised_error
    return [Check(f"denoised error / noisy-input error ({c.corruption}, a = {c.noise_level:g})",
                  denoised_error / noisy_error, "<=", 0.5)]


def _without_penalty(ctx: Context, **changes: Any) -> Trainer:
    """The same net (variant, data, seed, epochs) with its penalty switched off; its time goes to the notes."""
    trainer = ctx["trainer"]
    started = time.perf_counter()
    plain = train(trainer.variant, trainer.config.replace(**changes), ctx["data"], ctx["seed"], ctx["device"])
    ctx["companion_seconds"] = time.perf_counter() - started
    return plain


def _measure_sparse(ctx: Context) -> list[Check]:
    trainer, data = ctx["trainer"], ctx["data"]
    c = trainer.config
    x, _ = probe_images(data)
    codes = _encode(trainer.model, _model_inputs(trainer, x))  # (n, units) in (0, 1)
    rho_hat = codes.mean(dim=0)  # (units,)
    plain = _without_penalty(ctx, beta=0.0)
    on, plain_on = active_share(codes), active_share(_encode(plain.model, _model_inputs(plain, x)))
    ctx["notes"]["median rho_hat"] = float(rho_hat.median())
    ctx["notes"]["units on (h > 0.5) per image"] = on
    ctx["notes"]["units on per image without the penalty"] = plain_on
    return [Check(f"share of units with rho_hat in [rho/2, 2 rho] (rho = {c.rho:g})", share_in_band(rho_hat, c.rho),
                  ">=", 0.8),
            Check("units on (h > 0.5) per image / the same net's without the penalty", on / plain_on, "<=", 0.5)]


def _measure_ksparse(ctx: Context) -> list[Check]:
    trainer, data = ctx["trainer"], ctx["data"]
    x, _ = probe_images(data)
    codes = _encode(trainer.model, _model_inputs(trainer, x))  # (n, units), k non-zero per row
    return [Check(f"share of the {codes.shape[1]} units never in the top k = {trainer.config.k} "
                  f"({len(x):,} test images)", dead_unit_share(codes), "<=", 0.05)]


def _measure_contractive(ctx: Context) -> list[Check]:
    trainer, data = ctx["trainer"], ctx["data"]
    x, _ = probe_images(data, JACOBIAN_IMAGES)
    x = _model_inputs(trainer, x)
    plain = _without_penalty(ctx, lam=0.0)
    norm, plain_norm = mean_jacobian_norm(trainer.model, x), mean_jacobian_norm(plain.model, x)
    ctx["notes"]["mean ||J||_F^2"] = norm
    ctx["notes"]["mean ||J||_F^2 without the penalty"] = plain_norm
    return [Check(f"mean ||J_f(x)||_F^2 / the same net's without the penalty (lam = {trainer.config.lam:g})",
                  norm / plain_norm, "<=", 0.2)]


def _judge(ctx: Context):
    judge = train_judge(ctx["data"], seed=ctx["seed"])
    ctx["notes"]["judge accuracy on real test digits"] = judge.test_accuracy
    return judge


def _measure_vae(ctx: Context) -> list[Check]:
    from vaelab.evaluate import probe_scores

    trainer, data = ctx["trainer"], ctx["data"]
    model = trainer.model
    x_test, y_test = probe_images(data)
    train_idx = torch.arange(min(len(data.train), 4 * PROBE_IMAGES)) * len(data.train) // min(
        len(data.train), 4 * PROBE_IMAGES)
    x_train, y_train = data.train.images[train_idx], data.train.labels[train_idx]
    scores = probe_scores(_encode(model, _model_inputs(trainer, x_train)).numpy(), y_train.numpy(),
                          _encode(model, _model_inputs(trainer, x_test)).numpy(), y_test.numpy(), neighbours=KNN)
    with torch.no_grad():
        model.eval()
        samples = model.sample(GENERATED, generator=torch.Generator().manual_seed(MEASURE_SEED)).cpu()
    labels, _ = _judge(ctx).classify(samples)
    return [Check(f"{KNN}-NN accuracy of the {model.code_dim}-D test codes", scores["knn"], ">=", 0.7),
            Check(f"digits among {GENERATED} prior samples (each >= 2% of them)",
                  class_coverage(labels, data.n_classes, 0.02), ">=", data.n_classes)]


def _measure_cvae(ctx: Context) -> list[Check]:
    trainer, data = ctx["trainer"], ctx["data"]
    requested = torch.arange(GENERATED) % data.n_classes
    with torch.no_grad():
        trainer.model.eval()
        samples = trainer.model.sample(GENERATED, y=requested,
                                       generator=torch.Generator().manual_seed(MEASURE_SEED)).cpu()
    labels, _ = _judge(ctx).classify(samples)
    return [Check(f"share of {GENERATED} conditional samples judged the requested digit",
                  float((labels == requested).float().mean()), ">=", 0.9)]


def _measure_binary_vae(ctx: Context) -> list[Check]:
    trainer, data = ctx["trainer"], ctx["data"]
    with torch.no_grad():
        trainer.model.eval()
        samples = trainer.model.sample(GENERATED, generator=torch.Generator().manual_seed(MEASURE_SEED)).cpu()
    labels, _ = _judge(ctx).classify(samples)
    ctx["notes"]["digits seen among the prior samples"] = float(len(torch.unique(labels)))
    return [Check(f"entropy of the judged digits of {GENERATED} prior samples / log {data.n_classes}",
                  normalised_entropy(labels, data.n_classes), ">=", 0.8)]


def _measure_ae_gmm(ctx: Context) -> list[Check]:
    trainer, data = ctx["trainer"], ctx["data"]
    model = trainer.model
    generator = torch.Generator().manual_seed(MEASURE_SEED)
    x, _ = probe_images(data, GENERATED)
    with torch.no_grad():
        model.eval()
        mixture = model.sample(GENERATED, generator=generator).cpu()
        normal = model.sample_standard_normal(GENERATED, generator=generator).cpu()
        reconstructions = model.reconstruct(_model_inputs(trainer, x).to(model.device)).cpu()
    judge = _judge(ctx)
    mixture_score, normal_score, ceiling = (digit_score(judge.probabilities(images))
                                            for images in (mixture, normal, reconstructions))
    ctx["notes"]["digit score of the mixture samples"] = mixture_score
    ctx["notes"]["digit score of the N(0, I) samples"] = normal_score
    ctx["notes"]["digit score of reconstructed test digits"] = ceiling
    ctx["notes"]["digit score of real test digits"] = digit_score(judge.probabilities(x))
    return [Check(f"digit score of {GENERATED} mixture samples / of reconstructed test digits",
                  mixture_score / ceiling, ">=", 0.8),
            Check("digit score of N(0, I) samples / of mixture samples", normal_score / mixture_score, "<=", 0.7)]


MEASURES: dict[str, Callable[[Context], list[Check]]] = {
    "ae": _measure_ae, "denoising": _measure_denoising, "sparse": _measure_sparse, "ksparse": _measure_ksparse,
    "contractive": _measure_contractive, "vae": _measure_vae, "cvae": _measure_cvae,
    "binary-vae": _measure_binary_vae, "ae-gmm": _measure_ae_gmm,
}
assert set(MEASURES) == set(VARIANTS), "every variant has a lesson measure"


# ---------------------------------------------------------------- the check
def measure_lesson(trainer: Trainer, data: DataBundle, seed: int = 0, device: str = "cpu") -> LessonReport:
    """Measure the lesson of a trained model (``trainer.model``)."""
    ctx: Context = {"trainer": trainer, "data": data, "seed": seed, "device": device, "notes": {},
                    "companion_seconds": 0.0}
    with torch.random.fork_rng():
        checks = MEASURES[trainer.variant](ctx)
    return LessonReport(trainer.variant, get_variant(trainer.variant).lesson, checks, ctx["notes"],
                        train_seconds=trainer.elapsed, companion_seconds=ctx["companion_seconds"],
                        epochs=trainer.epoch)


def check_lesson(variant: str, data: DataBundle, seed: int = 0, device: str = "cpu", epochs: int | None = None,
                 config: BaseConfig | None = None) -> LessonReport:
    """Train the variant's default configuration (or ``config``; ``epochs`` overrides) and measure its lesson."""
    info = get_variant(variant)
    config = config if config is not None else info.config_cls()
    if epochs is not None:
        config = config.replace(epochs=epochs)
    try:
        trainer = train(variant, config, data, seed, device)
    except RuntimeError as error:
        return LessonReport(variant, info.lesson, [], error=str(error))
    return measure_lesson(trainer, data, seed, device)
