"""Binary-latent VAE [binary-vae]: q(z|x) = Bernoulli(sigmoid(NN(x))) over latent bits, prior Bernoulli(1/2).

Sampled bits have no reparameterisation, so the encoder's gradient of the reconstruction term comes from the
score-function (REINFORCE) estimator  E_q[(f(z) - b) * grad log q(z|x)],  f = -log p(x|z), with a running-average
baseline b; the decoder gets the plain gradient and the KL term (closed form) its exact gradient.
With few latent bits (<= 16) log p(x) and the ELBO are computed exactly by enumerating all 2^d codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vaelab import losses
from vaelab.config import BaseConfig, param, redefault
from vaelab.nn import mlp
from vaelab.variants.base import Variant

MAX_ENUMERABLE_BITS = 16
CODE_CHUNK = 4096  # codes decoded at once while enumerating


# ---------------------------------------------------------------- pure helpers
def score_function_surrogate(log_q: torch.Tensor, f: torch.Tensor, baseline: torch.Tensor | float = 0.0
                             ) -> torch.Tensor:
    """A scalar whose value is 0 and whose gradient is the score-function estimator of grad E_q[f].

    gradient = mean over samples of (f - baseline) * grad log_q; f and baseline are treated as constants.
    log_q, f: the same shape (e.g. (L, B)); baseline: a scalar or broadcastable to f.
    """
    weight = (f - baseline).detach()
    return (weight * (log_q - log_q.detach())).mean()


def score_function_logit_grads(f: torch.Tensor, z: torch.Tensor, mu: torch.Tensor,
                               baseline: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Per-example score-function gradient w.r.t. the encoder's logits, averaged over the L samples.

    d log Bernoulli(z; sigmoid(l)) / dl = z - mu, so g_b = mean_l (f_lb - baseline) * (z_lb - mu_b).
    f: (L, B), z: (L, B, d), mu: (B, d) -> (B, d)
    """
    weight = (f - baseline).detach().unsqueeze(-1)  # (L, B, 1)
    return (weight * (z - mu.detach())).mean(dim=0)


def logit_grad_variance(f: torch.Tensor, z: torch.Tensor, mu: torch.Tensor,
                        baseline: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Variance across the batch (population, correction 0) of the per-example logit gradient, averaged over units.

    f: (L, B), z: (L, B, d), mu: (B, d) -> scalar
    """
    g = score_function_logit_grads(f, z, mu, baseline)  # (B, d)
    return g.var(dim=0, correction=0).mean()


def all_binary_codes(d: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
                     ) -> torch.Tensor:
    """Every code in {0,1}^d, row k holding the bits of k (least significant first). -> (2^d, d)"""
    k = torch.arange(2**d, device=device).unsqueeze(1)  # (K, 1)
    bits = torch.arange(d, device=device).unsqueeze(0)  # (1, d)
    return ((k >> bits) & 1).to(dtype)


def bernoulli_log_prob_logits(z: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log prod_j Bernoulli(z_j; sigmoid(l_j)) = sum_j [z_j l_j - softplus(l_j)]; z broadcast against logits.

    z: (..., d), logits: (..., d) -> (...)
    """
    return (z * logits).sum(dim=-1) - F.softplus(logits).sum(dim=-1)


# ---------------------------------------------------------------- config
@dataclass
class Config(BaseConfig):
    hidden_sizes: tuple[int, ...] = param(
        (200,), label="Hidden layers", help="Sizes of the encoder's hidden layers (decoder mirrors them).",
        low=1, high=4096)
    latent_dim: int = param(16, label="Latent bits",
                            help="Binary latent units; up to 16 allows exact log p(x) by enumerating 2^d codes.",
                            low=1, high=256)
    activation: str = param("relu", label="Hidden activation", help="Non-linearity of the hidden layers.",
                            choices=("relu", "tanh", "sigmoid", "elu"))
    baseline: bool = param(True, label="Baseline",
                           help="Subtract a running average of the reconstruction loss in the score-function "
                                "estimator (same mean, lower variance).")
    baseline_decay: float = param(0.9, label="Baseline decay",
                                  help="b <- decay * b + (1 - decay) * batch mean loss.",
                                  low=0.0, high=1.0, high_open=True)
    n_samples: int = param(1, label="Samples per image",
                           help="Latent codes drawn per image for the estimates.", low=1, high=1000)

    epochs: int = redefault(BaseConfig, "epochs", 50)

    PRESETS = {
        "default": {},
        "no-baseline": {"baseline": False},
        "8-bits": {"latent_dim": 8},
    }
    PRESET_NOTES = {
        "default": "The lab report's binary-latent VAE (its \"images generated\" figure beside the Gaussian VAE's): "
                   "16 latent bits (exact log p(x) by enumerating 2^16 codes), 784-200-16, 50 epochs; prior "
                   "samples show varied digits.",
        "no-baseline": "The score-function estimator without the running-average baseline: watch its variance.",
        "8-bits": "8 latent bits: 256 possible codes, so at most 256 different pictures.",
    }


# ---------------------------------------------------------------- model
class Model(Variant):
    """Bernoulli encoder and decoder; score-function gradients for the encoder.

    Buffers (saved in state_dict):
      ``baseline_value``/``baseline_count``: the running-average baseline b (b = 0 until one training batch has been
      seen, then b <- decay * b + (1 - decay) * mean f, the first batch setting it outright). The baseline used on a
      batch is the value before that batch's update, so it is independent of the batch's samples.
      ``grad_variance_value``/``grad_variance_count``: running average (same decay) of the encoder-gradient variance,
      defined as the variance across the batch of the per-example score-function gradient w.r.t. the encoder's output
      logits, g_b = mean_l (f_lb - b)(z_lb - mu_b), averaged over the latent units (see ``logit_grad_variance``).
      ``grad_variance_no_baseline_value``/``_count``: the same running average for b = 0, measured on the same batch
      and samples, so the two curves compare the estimators whatever the ``baseline`` setting trains with.
    """

    generative = True
    diagnostic_terms = ("grad_variance", "grad_variance_no_baseline")  # reported, but not losses (not in nats)

    def __init__(self, config: Config, input_dim: int, n_classes: int = 10):
        super().__init__(config, input_dim, n_classes)
        c = config
        self.encoder = mlp([input_dim, *c.hidden_sizes, c.latent_dim], c.activation)  # (B, D) -> (B, d) logits
        self.decoder = mlp([c.latent_dim, *reversed(c.hidden_sizes), input_dim], c.activation)  # (.., d) -> (.., D)
        self.register_buffer("baseline_value", torch.zeros(()))
        self.register_buffer("baseline_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("grad_variance_value", torch.zeros(()))
        self.register_buffer("grad_variance_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("grad_variance_no_baseline_value", torch.zeros(()))
        self.register_buffer("grad_variance_no_baseline_count", torch.zeros((), dtype=torch.long))

    @property
    def code_dim(self) -> int:
        return self.config.latent_dim

    # -- building blocks ----------------------------------------------------------------------------
    def encoder_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, D) -> (B, d)

    def sample_latents(self, logits: torch.Tensor, n_samples: int = 1,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ Bernoulli(sigmoid(logits)), no gradient. logits: (B, d) -> z: (L, B, d)"""
        mu = torch.sigmoid(logits.detach())
        u = torch.rand((n_samples, *mu.shape), dtype=mu.dtype, device=mu.device, generator=generator)
        return (u < mu).to(mu.dtype)

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) under the Bernoulli decoder. x: (B, D), z: (..., B, d) -> (..., B)"""
        return losses.bernoulli_log_likelihood(self.decoder(z), x)

    def log_q(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log q(z|x). x: (B, D), z: (..., B, d) -> (..., B)"""
        return bernoulli_log_prob_logits(z, self.encoder_logits(x))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = -d log 2 for every code. z: (..., d) -> (...)"""
        return torch.full(z.shape[:-1], -z.shape[-1] * math.log(2.0), dtype=z.dtype, device=z.device)

    def current_baseline(self) -> torch.Tensor:
        """The b used on the next batch: 0 when the baseline is off or no training batch has been seen."""
        if not self.config.baseline or int(self.baseline_count) == 0:
            return torch.zeros((), dtype=self.baseline_value.dtype, device=self.baseline_value.device)
        return self.baseline_value.detach().clone()

    @staticmethod
    def _update_running(value: torch.Tensor, count: torch.Tensor, new: torch.Tensor, decay: float) -> None:
        new = new.detach().to(value.dtype)
        value.copy_(new if int(count) == 0 else decay * value + (1.0 - decay) * new)
        count.add_(1)

    # -- the contract -------------------------------------------------------------------------------
    def _terms_and_internals(self, x: torch.Tensor):
        logits = self.encoder_logits(x)  # (B, d)
        z = self.sample_latents(logits, self.config.n_samples)  # (L, B, d)
        f = -self.log_px_given_z(x, z)  # (L, B): reconstruction loss per sample, grad to decoder only
        kl = losses.kl_bernoulli_logits_to_uniform(logits)  # (B,)
        terms = {"reconstruction": f.mean(), "kl": kl.mean()}
        terms["total"] = terms["reconstruction"] + terms["kl"]
        return terms, logits, z, f

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """reconstruction = -E_q[log p(x|z)] (sampled), kl (closed form); total = negative ELBO estimate (nats)."""
        terms, *_ = self._terms_and_internals(x)
        return terms

    def training_objective(self, x: torch.Tensor, y: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Surrogate whose value equals total and whose gradient is: plain for the decoder; score-function
        (with baseline) plus exact KL gradient for the encoder.

        Adds two diagnostics to the reported terms, both from the same batch and samples: "grad_variance" (the
        encoder-gradient variance with the baseline b used for training) and "grad_variance_no_baseline" (b = 0).
        In training mode each is a running average (buffers), in eval mode this batch's value."""
        terms, logits, z, f = self._terms_and_internals(x)
        b = self.current_baseline()
        log_q = bernoulli_log_prob_logits(z, logits)  # (L, B), gradient to the encoder
        surrogate = terms["total"] + score_function_surrogate(log_q, f, b)
        mu = torch.sigmoid(logits)  # (B, d)
        batch_var = logit_grad_variance(f, z, mu, b)
        batch_var_plain = logit_grad_variance(f, z, mu, 0.0)
        if self.training:
            decay = self.config.baseline_decay
            if self.config.baseline:
                self._update_running(self.baseline_value, self.baseline_count, f.detach().mean(), decay)
            self._update_running(self.grad_variance_value, self.grad_variance_count, batch_var, decay)
            self._update_running(self.grad_variance_no_baseline_value, self.grad_variance_no_baseline_count,
                                 batch_var_plain, decay)
            reported_var = self.grad_variance_value.detach().clone()
            reported_plain = self.grad_variance_no_baseline_value.detach().clone()
        else:
            reported_var, reported_plain = batch_var.detach(), batch_var_plain.detach()
        return surrogate, {**terms, "grad_variance": reported_var, "grad_variance_no_baseline": reported_plain}

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Bernoulli means mu = sigmoid(logits). (B, D) -> (B, d)"""
        return torch.sigmoid(self.encoder_logits(x))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the most probable code (mu > 1/2): the decoder was trained on bits, not on means."""
        return self.decode((self.encode(x) > 0.5).to(x.dtype))

    def sample(self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """z ~ Bernoulli(1/2)^d, decoded to pixel means. -> (n, D)"""
        draw_device = generator.device if generator is not None else self.device
        z = torch.randint(0, 2, (n, self.config.latent_dim), generator=generator, device=draw_device)
        return self.decode(z.to(device=self.device, dtype=self.baseline_value.dtype))

    # -- exact quantities by enumeration ------------------------------------------------------------
    def _check_enumerable(self) -> None:
        d = self.config.latent_dim
        if d > MAX_ENUMERABLE_BITS:
            raise ValueError(f"latent_dim: exact enumeration needs latent_dim <= {MAX_ENUMERABLE_BITS} "
                             f"(2^d codes), got {d}")

    def _enumerate(self, x: torch.Tensor):
        """Yield (codes (K, d), log p(x|z) (K, B), log q(z|x) (K, B)) chunk by chunk over all 2^d codes."""
        self._check_enumerable()
        logits = self.encoder_logits(x)  # (B, d)
        log_q_const = F.softplus(logits).sum(dim=-1)  # (B,)
        codes = all_binary_codes(self.config.latent_dim, dtype=x.dtype, device=x.device)  # (2^d, d)
        for start in range(0, codes.shape[0], CODE_CHUNK):
            chunk = codes[start:start + CODE_CHUNK]  # (K, d)
            dec = self.decoder(chunk)  # (K, D) logits
            # log p(x|z) = sum_i [x_i l_i - softplus(l_i)]: one matmul for all (code, image) pairs
            log_px = dec @ x.T - F.softplus(dec).sum(dim=-1, keepdim=True)  # (K, B)
            log_q = chunk @ logits.T - log_q_const  # (K, B)
            yield chunk, log_px, log_q

    def exact_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = logsumexp_z [log p(x|z) + log p(z)] over all 2^d codes. x: (B, D) -> (B,)"""
        log_prior = -self.config.latent_dim * math.log(2.0)
        parts = [torch.logsumexp(log_px, dim=0) for _, log_px, _ in self._enumerate(x)]  # each (B,)
        return torch.logsumexp(torch.stack(parts), dim=0) + log_prior

    def exact_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """ELBO = sum_z q(z|x) [log p(x|z) + log p(z) - log q(z|x)] over all 2^d codes. x: (B, D) -> (B,)"""
        log_prior = -self.config.latent_dim * math.log(2.0)
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for _, log_px, log_q in self._enumerate(x):
            total = total + (log_q.exp() * (log_px + log_prior - log_q)).sum(dim=0)
        return total

    # -- importance sampling (for latents too wide to enumerate) ------------------------------------
    def log_importance_weights(self, x: torch.Tensor, k: int, y: torch.Tensor | None = None,
                               generator: torch.Generator | None = None) -> torch.Tensor:
        """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x).   (B, D) -> (K, B)

        log_mean_exp over K gives the importance-weighted bound on log p(x); K = 1 is a one-sample ELBO."""
        logits = self.encoder_logits(x)  # (B, d)
        z = self.sample_latents(logits, k, generator)  # (K, B, d)
        return self.log_px_given_z(x, z) + self.log_prior(z) - bernoulli_log_prob_logits(z, logits)
