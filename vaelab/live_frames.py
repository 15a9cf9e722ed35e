"""Live views as the worker computes them: pure functions of the model and a fixed test batch that return small
arrays (a *frame*), and the schedule that runs them between training chunks within a bounded share of the worker's
time; the app's server relays them to the browser, which draws them (docs/live-stream.md).

    batch = fixed_batch(data, 10)                                 # the same test images the page shows
    schedule = ViewSchedule(VIEWS["reconstructions"], max_share=0.15)
    frames = schedule.run_due(model, batch, step=trainer.step)     # [] when nothing is due
    frames[0].arrays["images"]                                    # (2, 10, 28, 28) uint8: originals, reconstructions

A frame holds only numpy arrays (uint8 images, float16 codes, float32 numbers): compact to send, nothing to unpickle
but arrays. Each view has its own period; no view is computed twice for one step.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from vaelab.data import DataBundle
from vaelab.variants.base import Variant

MAX_SHARE = 0.15  # the views' share of the worker's wall time, at most
WIRE_DTYPES = ("uint8", "float16", "float32", "int64")


def fixed_test_indices(labels: Tensor, n: int) -> Tensor:
    """n test indices, the first image of each class first (so every digit shows), then the next ones in order."""
    firsts = [int(torch.nonzero(labels == c)[0]) for c in torch.unique(labels).tolist()]
    chosen = firsts[:n]
    for i in range(len(labels)):
        if len(chosen) >= n:
            break
        if i not in chosen:
            chosen.append(i)
    return torch.tensor(chosen, dtype=torch.long)


MAP_IMAGES = 2000  # test images whose codes a latent map shows (the page's live map shows as many)
NOISE_SEED = 0  # the denoising view corrupts its images with the same draw every time, as the page does


@dataclass(frozen=True)
class FixedBatch:
    """The test images every view of a run draws from, fixed for the run: ``x`` for the image rows, ``map_x`` (evenly
    spaced over the test set, as the page's latent map takes them) for the codes."""

    x: Tensor  # (n, D) in [0, 1]
    y: Tensor  # (n,)
    image_shape: tuple[int, int]
    map_x: Tensor | None = None  # (m, D)
    map_y: Tensor | None = None  # (m,)
    map_index: Tensor | None = None  # (m,) their indices in the test split


def fixed_batch(data: DataBundle, n: int, n_map: int = MAP_IMAGES) -> FixedBatch:
    from vaelab.analysis.inference import spaced_indices

    idx = fixed_test_indices(data.test.labels, n)
    spaced = spaced_indices(len(data.test), n_map)
    return FixedBatch(data.test.images[idx], data.test.labels[idx], data.image_shape,
                      data.test.images[spaced], data.test.labels[spaced], spaced)


def to_uint8(images: Tensor, image_shape: tuple[int, int]) -> np.ndarray:
    """(..., H*W) values in [0, 1] -> (..., H, W) uint8, as the page's pictures round them (nan shows white)."""
    a = images.detach().float().cpu().numpy()
    a = np.nan_to_num(a, nan=1.0).reshape(*a.shape[:-1], *image_shape)
    return (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)


@torch.no_grad()
def run_model(model: Variant, fn: Callable[..., Tensor], *args: Tensor | None) -> Tensor:
    """Call a model method in eval mode on the model's device, restoring its train/eval mode; result on CPU."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        out = fn(*(a.to(device) if isinstance(a, Tensor) else a for a in args))
    finally:
        model.train(was_training)
    return out.detach().cpu()


def reconstructions(model: Variant, batch: FixedBatch) -> dict[str, np.ndarray]:
    """{"images": (2, n, H, W) uint8}: the test images, then their reconstructions."""
    recon = run_model(model, model.reconstruct, batch.x, batch.y if model.uses_labels else None)  # (n, D)
    return {"images": to_uint8(torch.stack([batch.x, recon]), batch.image_shape)}


def codes(model: Variant, batch: FixedBatch) -> dict[str, np.ndarray]:
    """{"codes": (m, code) float16, "labels": (m,) uint8}: where the map's test images land in the code space (the
    batch's image rows when it has no map sample)."""
    x, y = (batch.x, batch.y) if batch.map_x is None else (batch.map_x, batch.map_y)
    z = run_model(model, model.encode, x, y if model.uses_labels else None)  # (m, code)
    return {"codes": z.to(torch.float16).numpy(), "labels": y.to(torch.uint8).numpy()}


def denoised(model: Variant, batch: FixedBatch) -> dict[str, np.ndarray]:
    """{"images": (3, n, H, W) uint8}: the test images, their copies corrupted as the model trains on them (the same
    draw every time), and the model's output for the corrupted copies."""
    from vaelab.variants.denoising import corrupt

    config = model.config
    noisy = corrupt(batch.x, config.corruption, config.noise_level,
                    generator=torch.Generator().manual_seed(NOISE_SEED))  # (n, D)
    cleaned = run_model(model, model.reconstruct, noisy)  # (n, D)
    return {"images": to_uint8(torch.stack([batch.x, noisy, cleaned]), batch.image_shape)}


def filters(model: Variant, batch: FixedBatch) -> dict[str, np.ndarray]:
    """{"filters": (units, H, W) uint8}: each first-layer unit's input weights, min-max normalised per unit (a
    constant unit shows mid-grey), as the page's filter grid shows them."""
    from vaelab.analysis.image_grids import first_layer_weights

    w = torch.from_numpy(first_layer_weights(model))  # (units, D)
    lo, hi = w.min(dim=1, keepdim=True).values, w.max(dim=1, keepdim=True).values
    span = hi - lo
    scaled = torch.where(span == 0, torch.full_like(w, 0.5), (w - lo) / torch.where(span == 0, 1.0, span))
    return {"filters": to_uint8(scaled, batch.image_shape)}


SAMPLE_SEED = 0  # every sample frame of a run draws the same latent points: the pictures change with the weights only


def samples(model: Variant, batch: FixedBatch) -> dict[str, np.ndarray]:
    """{"samples": (n, H, W) uint8}: the model's samples from fixed draws (a conditional model: digits 0, 1, ...)."""
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    drawn = run_model(model, lambda: model.sample(len(batch.x), generator=generator))  # (n, D)
    return {"samples": to_uint8(drawn, batch.image_shape)}


def activations(model: Variant, batch: FixedBatch) -> dict[str, np.ndarray]:
    """{"means": (units,) float32, "rho": (1,) float32 where the model has a target}: each code unit's mean
    activation over the map's test images (the sparse pages' histogram of rho_hat)."""
    x = batch.x if batch.map_x is None else batch.map_x
    codes = run_model(model, model.encode, x)  # (m, units)
    out = {"means": codes.mean(dim=0).float().numpy()}
    rho = getattr(getattr(model, "config", None), "rho", None)
    if rho is not None:
        out["rho"] = np.array([rho], dtype=np.float32)
    return out


MANIFOLD_N = 15  # the VAE page's manifold grid, n x n


def manifold(model: Variant, batch: FixedBatch) -> dict[str, np.ndarray]:
    """{"tiles": (n*n, H, W) uint8}: the decodings of the n x n grid z = Phi^-1(p) of a 2-D latent, row-major as the
    page draws them (analysis.generation.manifold_latents)."""
    from vaelab.analysis.generation import manifold_latents

    z = torch.from_numpy(manifold_latents(MANIFOLD_N))  # (n*n, 2)
    decoded = run_model(model, model.decode, z)  # (n*n, D)
    return {"tiles": to_uint8(decoded, batch.image_shape)}


@dataclass(frozen=True)
class LiveView:
    name: str
    period_s: float  # the least time between two computations of this view
    compute: Callable[[Variant, FixedBatch], dict[str, np.ndarray]]


VIEWS = {
    "reconstructions": LiveView("reconstructions", 0.5, reconstructions),
    "codes": LiveView("codes", 1.0, codes),
    "filters": LiveView("filters", 1.0, filters),
    "samples": LiveView("samples", 1.0, samples),
    "denoised": LiveView("denoised", 0.5, denoised),
    "activations": LiveView("activations", 1.0, activations),
    "manifold": LiveView("manifold", 1.0, manifold),
}
MAX_MAPPED_CODE = 2  # codes are streamed for a map only when they are 1-D or 2-D
FILTER_PAGES = ("sparse", "ksparse")  # the pages that draw first-layer filters while a run trains
MANIFOLD_PAGES = ("vae",)  # the pages that draw a 2-D latent's manifold


def views_for(variant: str, model: Variant) -> list[LiveView]:
    """The views of this module that ``variant``'s page draws live: reconstructions on every page (the denoising
    page: original, corrupted and cleaned rows); filters and the units' mean activations where
    the page shows them; the codes of a 1-D or 2-D code space (a latent map); the VAE's manifold of a 2-D latent;
    samples from a generative model. A page's other pictures (estimator variances, the exact posterior) are drawn
    on demand."""
    chosen = [VIEWS["denoised" if variant == "denoising" else "reconstructions"]]
    if variant in FILTER_PAGES:
        chosen += [VIEWS["filters"], VIEWS["activations"]]
    if model.code_dim <= MAX_MAPPED_CODE:
        chosen.append(VIEWS["codes"])
    if variant in MANIFOLD_PAGES and model.code_dim == 2:
        chosen.append(VIEWS["manifold"])
    if model.generative:
        chosen.append(VIEWS["samples"])
    return chosen


@dataclass(frozen=True)
class Frame:
    view: str
    step: int  # the training step whose weights it shows
    arrays: dict[str, np.ndarray]
    seconds: float = 0.0  # what computing it took
    meta: dict = field(default_factory=dict)  # small JSON values beside the arrays (a caption, a status)
    made_at: float = 0.0  # time.time() when it was computed: a client's frame age is its arrival time minus this

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


@dataclass
class ViewSchedule:
    """Which views are due between two training chunks. A view is due when its period has passed and the step has
    moved since it last ran; all views together wait, after each computation, long enough that they take at most
    ``max_share`` of the wall time (a view that took c seconds holds the next for c * (1 - share) / share)."""

    views: list[LiveView]
    max_share: float = MAX_SHARE
    clock: Callable[[], float] = time.perf_counter
    last_run: dict[str, float] = field(default_factory=dict)
    last_step: dict[str, int] = field(default_factory=dict)
    quiet_until: float = 0.0
    view_seconds: float = 0.0  # what the views have taken in all

    def __post_init__(self) -> None:
        if not 0.0 < self.max_share < 1.0:
            raise ValueError(f"max_share: must be in (0, 1) (got {self.max_share!r})")

    def due(self, step: int) -> list[LiveView]:
        now = self.clock()
        if now < self.quiet_until:
            return []
        return [v for v in self.views if self.last_step.get(v.name) != step
                and now - self.last_run.get(v.name, -np.inf) >= v.period_s]

    def run_due(self, model: Variant, batch: FixedBatch, step: int) -> list[Frame]:
        """Compute the views that are due, oldest first, until the share would be passed; their frames."""
        frames = []
        for view in sorted(self.due(step), key=lambda v: self.last_run.get(v.name, -np.inf)):
            if self.clock() < self.quiet_until:
                break
            began = self.clock()
            arrays = view.compute(model, batch)
            ended = self.clock()
            cost = ended - began
            self.last_run[view.name], self.last_step[view.name] = ended, step
            self.view_seconds += cost
            self.quiet_until = ended + cost * (1.0 - self.max_share) / self.max_share
            frames.append(Frame(view.name, step, arrays, cost, made_at=time.time()))
        return frames


# -- the wire: a 4-byte big-endian length, a JSON header (view, step, the arrays' names, dtypes, shapes and byte
# ranges), then the arrays' raw bytes. The worker sends frames so, and the relay forwards them unchanged.
def encode_frame(frame: Frame) -> bytes:
    """One frame as bytes: length of the header (4 bytes, big-endian), the JSON header, the arrays back to back."""
    parts, specs, offset = [], [], 0
    for name, array in frame.arrays.items():
        array = np.ascontiguousarray(array)
        if array.dtype.name not in WIRE_DTYPES:
            raise ValueError(f"frame {frame.view!r}: array {name!r} is {array.dtype}; "
                             f"allowed: {', '.join(WIRE_DTYPES)}")
        specs.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape), "offset": offset,
                      "nbytes": array.nbytes})
        parts.append(array.tobytes())
        offset += array.nbytes
    header = json.dumps({"view": frame.view, "step": frame.step, "made_at": frame.made_at, "meta": frame.meta,
                         "arrays": specs}).encode()
    return struct.pack(">I", len(header)) + header + b"".join(parts)


def decode_frame(data: bytes) -> Frame:
    """encode_frame's inverse (for tests and headless clients); ValueError for bytes that are not a frame."""
    if len(data) < 4:
        raise ValueError("a frame needs at least 4 bytes")
    (length,) = struct.unpack(">I", data[:4])
    try:
        header = json.loads(data[4:4 + length])
        body = memoryview(data)[4 + length:]
        arrays = {}
        for spec in header["arrays"]:
            if spec["dtype"] not in WIRE_DTYPES or spec["offset"] + spec["nbytes"] > len(body):
                raise ValueError(f"array {spec.get('name')!r} does not fit the frame")
            raw = body[spec["offset"]:spec["offset"] + spec["nbytes"]]
            arrays[spec["name"]] = np.frombuffer(raw, dtype=spec["dtype"]).reshape(spec["shape"]).copy()
        meta = header.get("meta") or {}
        if not isinstance(meta, dict):
            raise ValueError("meta must be an object")
        return Frame(header["view"], int(header["step"]), arrays, 0.0, meta, float(header.get("made_at", 0.0)))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a frame ({e})") from None
