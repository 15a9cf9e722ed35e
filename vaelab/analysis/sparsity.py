"""What the sparse and k-sparse lessons measure: the KL-Bernoulli curve, code statistics, the units a k-sparse
code keeps and reconstructions from fewer of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vaelab import losses
from vaelab.analysis.inference import ArrayLike, as_codes, evaluating, one_image
from vaelab.variants.base import Variant


def kl_bernoulli_curve(rho: float, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """KL(rho || rho_hat) over rho_hat in (0, 1): n points, evenly spaced plus rho itself (where KL = 0)."""
    if not 0.0 < rho < 1.0:
        raise ValueError(f"rho: must be in (0, 1) (got {rho!r})")
    if n < 3:
        raise ValueError(f"n: must be >= 3 (got {n})")
    edge = 1.0 / (2 * n)
    rho_hat = np.sort(np.append(np.linspace(edge, 1.0 - edge, n - 1), rho))  # (n,)
    kl = losses.kl_bernoulli(float(rho), torch.from_numpy(rho_hat), eps=0.0)
    return rho_hat, kl.numpy()


def code_statistics(codes: ArrayLike, active_threshold: float = 1e-6, max_values: int = 50_000,
                    seed: int = 0) -> dict[str, np.ndarray | float | int]:
    """Per-unit and overall summaries of codes (N, U) for histograms.

    mean / std / min / max / active_fraction: (U,) (active: |code| > threshold); dead_units: units never active;
    active_per_example: mean count of active units per code; values: all code values flattened (a random
    subsample of ``max_values`` when there are more).
    """
    c = as_codes(codes)
    active = np.abs(c) > active_threshold  # (N, U)
    values = c.reshape(-1)
    if values.size > max_values:
        values = np.random.default_rng(seed).choice(values, max_values, replace=False)
    return {
        "mean": c.mean(axis=0), "std": c.std(axis=0), "min": c.min(axis=0), "max": c.max(axis=0),
        "active_fraction": active.mean(axis=0), "dead_units": int((~active.any(axis=0)).sum()),
        "active_per_example": float(active.sum(axis=1).mean()), "values": values,
    }


def top_k_units(model: Variant, image: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k code units a k-sparse model keeps for one image: (indices (k,), values (k,)), largest value first."""
    if not hasattr(model, "encode_topk"):
        raise ValueError(f"model: {type(model).__name__} has no top-k code (k-sparse autoencoders only)")
    x = one_image(model, image)
    with evaluating(model):
        code = model.encode_topk(x, k)[0]  # (H,), zero outside the kept units; checks 1 <= k <= H
        index = model.encoder(x)[0].topk(k).indices  # the same selection, largest first
        return index.cpu().numpy(), code[index].float().cpu().numpy()


def reconstructions_at_k(model: Variant, image: ArrayLike, ks: Sequence[int]) -> np.ndarray:
    """One image decoded from its code with only the k largest units kept, for each k. -> (len(ks), D)."""
    if not hasattr(model, "encode_topk"):
        raise ValueError(f"model: {type(model).__name__} has no top-k code (k-sparse autoencoders only)")
    if len(ks) == 0:
        raise ValueError("ks: need at least one k")
    x = one_image(model, image)
    with evaluating(model):
        codes = torch.cat([model.encode_topk(x, int(k)) for k in ks])  # (len(ks), H)
        return model.decode(codes).float().cpu().numpy()
