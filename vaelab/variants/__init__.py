"""The registry: a short key per variant -> its title, config, model class and the lesson it teaches.

Each variant lives in its own module exposing ``Config`` (a BaseConfig dataclass) and ``Model`` (a
Variant). Modules are imported on first use, so listing variants stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vaelab.config import BaseConfig, ConfigError

if TYPE_CHECKING:  # the registry itself imports no torch: Home draws before torch loads
    from vaelab.variants.base import Variant


@dataclass(frozen=True)
class VariantInfo:
    key: str
    module: str
    title: str
    lesson: str
    group: str  # "deterministic" or "generative"

    @property
    def config_cls(self) -> type[BaseConfig]:
        return importlib.import_module(f"vaelab.variants.{self.module}").Config

    @property
    def model_cls(self) -> type[Variant]:
        return importlib.import_module(f"vaelab.variants.{self.module}").Model


_TABLE = [
    ("ae", "ae", "Autoencoder",
     "A bottleneck forces a compressed code; the decoder learns to undo it.", "deterministic"),
    ("denoising", "denoising", "Denoising autoencoder",
     "Reconstructing the clean input from a corrupted one learns structure, not the identity.", "deterministic"),
    ("sparse", "sparse", "Sparse autoencoder",
     "A KL-Bernoulli penalty keeps each unit's mean activation near rho: units become stroke detectors.",
     "deterministic"),
    ("ksparse", "ksparse", "k-sparse autoencoder",
     "Keeping only the k strongest units per image gives sparse codes without a penalty term.", "deterministic"),
    ("contractive", "contractive", "Contractive autoencoder",
     "Penalising the encoder's Jacobian makes the code insensitive to small input changes.", "deterministic"),
    ("vae", "vae", "Variational autoencoder",
     "Maximise the ELBO: reconstruction minus KL to the prior, with the reparameterisation trick.",
     "generative"),
    ("cvae", "cvae", "Conditional VAE",
     "Give the label to encoder and decoder: the latent keeps the style, the label picks the digit.",
     "generative"),
    ("binary-vae", "binary_vae", "Binary-latent VAE",
     "Discrete latents need the score-function estimator; a running-average baseline cuts its variance.",
     "generative"),
    ("ae-gmm", "ae_gmm", "Autoencoder + Gaussian mixture",
     "A plain autoencoder's code space has holes; a mixture fitted on the codes makes it generate.",
     "generative"),
]

VARIANTS: dict[str, VariantInfo] = {k: VariantInfo(k, m, t, lesson, g) for k, m, t, lesson, g in _TABLE}


def get_variant(key: str) -> VariantInfo:
    if key not in VARIANTS:
        raise ConfigError("variant", f"unknown variant {key!r}; allowed: {', '.join(VARIANTS)}")
    return VARIANTS[key]


def build_model(key: str, config: BaseConfig, input_dim: int, n_classes: int = 10) -> Variant:
    info = get_variant(key)
    if not isinstance(config, info.config_cls):
        raise ConfigError("config", f"expected {info.config_cls.__name__} for variant {key!r}, "
                                    f"got {type(config).__name__}")
    return info.model_cls(config, input_dim=input_dim, n_classes=n_classes)
