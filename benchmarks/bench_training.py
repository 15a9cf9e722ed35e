"""Training throughput: vaelab's Trainer against a reference loop written the common way.

Same 784-400-20 Bernoulli VAE (the `pytorch-example` preset), same data (mnist-5k train, the real MNIST test set
from ../shared/datasets/mnist-test when present, else mnist-5k test), same seed, same epochs. The reference uses a
torch Dataset that turns each image into a tensor per item and a DataLoader with batch 128, and evaluates the test
set through the same kind of loader; the model, loss (summed BCE + analytic KL) and Adam settings are the same.

The two sides run interleaved epoch by epoch (the order alternates), so both see the same machine load; the
ratio of their median epoch times (train + test) is the figure. Also printed: samples/s of both, the final test
loss of both, the FLOPs of one epoch (train + test), the machine's measured peak float32 rate (a 2048^2 matmul at
the same thread count) and hence the compute floor of an epoch and the largest speed-up any implementation could
reach over the reference here, and how much of the reference's epoch is its per-item loading (its two loaders
iterated without the model). ``--bf16`` adds a third, interleaved side: the Trainer with the opt-in
``precision="bfloat16"`` (its final test loss also re-evaluated in float32).

    .venv/bin/python benchmarks/bench_training.py [--epochs 10] [--repeats 1] [--threads N] [--bf16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vaelab.data import load_data  # noqa: E402
from vaelab.training import Trainer  # noqa: E402
from vaelab.variants import get_variant  # noqa: E402

MNIST_TEST = ROOT.parent / "shared" / "datasets" / "mnist-test"
GOAL_SPEEDUP = 3.0
GOAL_LOSS_GAP = 1.0


# ---------------------------------------------------------------- the reference, written the common way
class PerItemDataset(Dataset):
    """uint8 images kept as numpy; each __getitem__ builds a float tensor (as transforms.ToTensor() does)."""

    def __init__(self, images_uint8: np.ndarray, labels: np.ndarray):
        self.images = images_uint8  # (N, 28, 28) uint8
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.images[i]).float().div(255.0).unsqueeze(0)  # (1, 28, 28)
        return x, int(self.labels[i])


class ReferenceVAE(nn.Module):
    """The classic PyTorch-example VAE: 784-400-(20, 20), 20-400-784."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.fc4(F.relu(self.fc3(z))), mu, logvar


def reference_loss(logits, x, mu, logvar):
    bce = F.binary_cross_entropy_with_logits(logits, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


class ReferenceRun:
    """The common loop, one epoch per call. Its randomness (init, shuffling, noise) is the global RNG under the
    seed; the state is kept between calls so that the other side's epochs in between do not touch it."""

    def __init__(self, train_u8, train_y, test_u8, test_y, seed: int):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = ReferenceVAE()
            self.rng_state = torch.get_rng_state()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.train_loader = DataLoader(PerItemDataset(train_u8, train_y), batch_size=128, shuffle=True)
        self.test_loader = DataLoader(PerItemDataset(test_u8, test_y), batch_size=128, shuffle=False)
        self.n_test = len(test_u8)
        self.test_loss = float("nan")

    def epoch(self) -> None:
        with torch.random.fork_rng():
            torch.set_rng_state(self.rng_state)
            self.model.train()
            for x, _y in self.train_loader:
                self.opt.zero_grad()
                logits, mu, logvar = self.model(x)
                loss = reference_loss(logits, x, mu, logvar)
                loss.backward()
                self.opt.step()
            self.model.eval()
            total = 0.0
            with torch.no_grad():
                for x, _y in self.test_loader:
                    logits, mu, logvar = self.model(x)
                    total += reference_loss(logits, x, mu, logvar).item()
            self.test_loss = total / self.n_test
            self.rng_state = torch.get_rng_state()

    def loading_seconds(self) -> float:
        """One pass over both loaders without the model: the per-item data work in one of its epochs."""
        with torch.random.fork_rng():
            t0 = time.perf_counter()
            for loader in (self.train_loader, self.test_loader):
                for _batch in loader:
                    pass
            return time.perf_counter() - t0


# ---------------------------------------------------------------- the vaelab side
class TrainerRun:
    def __init__(self, data, epochs: int, seed: int, precision: str = "float32"):
        config = get_variant("vae").config_cls.from_preset("pytorch-example", epochs=epochs)
        self.trainer = Trainer("vae", config, data, seed=seed, precision=precision)

    def epoch(self) -> None:
        self.trainer.advance()  # to the end of the epoch: train steps + test evaluation

    @property
    def test_loss(self) -> float:
        return [r for r in self.trainer.history if r["kind"] == "test"][-1]["total"]

    def step_samples_per_s(self) -> float:
        """Median of the history's train rows (time inside optimizer steps only)."""
        return statistics.median(r["samples_per_s"] for r in self.trainer.history if r["kind"] == "train")

    def test_loss_float32(self) -> float:
        t = self.trainer
        precision, t.precision = t.precision, "float32"
        try:
            return t.evaluate("test")["total"]
        finally:
            t.precision = precision


# ---------------------------------------------------------------- FLOPs and the peak rate
def linear_layers(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def epoch_flops(model: nn.Module, input_dim: int, n_train: int, n_test: int) -> tuple[float, float]:
    """(train FLOPs, test FLOPs) of one epoch, counting the matrix products (2 x multiply-adds) only.

    Per example and linear layer (in x out): forward 2*in*out; backward 2*in*out for the weight gradient and 2*in*out
    for the input gradient, except for the layer that reads the data (its input needs no gradient). Test: forward.
    """
    train = test = 0.0
    for layer in linear_layers(model):
        macs = layer.in_features * layer.out_features
        reads_data = layer.in_features == input_dim
        train += 2 * macs * (2 if reads_data else 3)
        test += 2 * macs
    return train * n_train, test * n_test


def measured_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """float32 FLOP/s of the best of ``repeats`` n x n matmuls at the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


# ---------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side; the median epoch time is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both sides (default: torch's)")
    parser.add_argument("--bf16", action="store_true", help="add the Trainer with precision='bfloat16' (opt-in)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    test_source = f"idx:{MNIST_TEST}" if (MNIST_TEST / "t10k-images-idx3-ubyte.gz").exists() else None
    data = load_data("mnist-5k", test_source)
    to_u8 = lambda t: (t.reshape(-1, 28, 28) * 255).round().to(torch.uint8).numpy()  # noqa: E731
    train_u8, test_u8 = to_u8(data.train.images), to_u8(data.test.images)
    n_train, n_test = len(train_u8), len(test_u8)
    print(f"command: python {' '.join(sys.argv)}")
    print(f"data: {n_train} train (mnist-5k), {n_test} test ({data.spec['test']}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
          f"{args.epochs} epochs x {args.repeats} run(s), seed {args.seed}; load {os.getloadavg()[0]:.2f}", flush=True)

    sides = ["reference", "vaelab"] + (["vaelab bf16"] if args.bf16 else [])
    times: dict[str, list[float]] = {s: [] for s in sides}
    losses: dict[str, list[float]] = {s: [] for s in sides}
    sps: dict[str, list[float]] = {s: [] for s in sides}
    loss32: list[float] = []
    loading: list[float] = []
    peaks = [measured_peak_flops()]
    for _ in range(args.repeats):
        runs = {"reference": ReferenceRun(train_u8, data.train.labels.numpy(), test_u8, data.test.labels.numpy(),
                                          args.seed),
                "vaelab": TrainerRun(data, args.epochs, args.seed)}
        if args.bf16:
            runs["vaelab bf16"] = TrainerRun(data, args.epochs, args.seed, precision="bfloat16")
        for epoch in range(args.epochs):
            order = sides if epoch % 2 == 0 else sides[::-1]  # alternate who goes first
            for side in order:
                t0 = time.perf_counter()
                runs[side].epoch()
                times[side].append(time.perf_counter() - t0)
        for side in sides:
            losses[side].append(runs[side].test_loss)
            if side != "reference":
                sps[side].append(runs[side].step_samples_per_s())
        if args.bf16:
            loss32.append(runs["vaelab bf16"].test_loss_float32())
        loading += [runs["reference"].loading_seconds() for _ in range(3)]
        peaks.append(measured_peak_flops())
        model = runs["vaelab"].trainer.model
    load_end = os.getloadavg()[0]

    peak = max(peaks)
    train_flops, test_flops = epoch_flops(model, data.input_dim, n_train, n_test)
    flops = train_flops + test_flops
    floor = flops / peak
    med = {s: statistics.median(v) for s, v in times.items()}
    loss = {s: statistics.median(v) for s, v in losses.items()}
    ref = med["reference"]
    print(f"\nper epoch (train {n_train:,} + test {n_test:,}), median over {args.epochs} epochs x "
          f"{args.repeats} run(s):")
    for side in sides:
        extra = ""
        if side != "reference":
            s = statistics.median(sps[side])
            extra = (f", {s:,.0f} samples/s inside steps, speed-up {ref / med[side]:.2f}x, "
                     f"{flops / med[side] / peak:.0%} of peak")
        print(f"  {side:12s}: {med[side]:.3f} s/epoch, {n_train / med[side]:,.0f} train samples/s incl. test; "
              f"final test loss {loss[side]:.2f} nats{extra}")
    gap = abs(loss["vaelab"] - loss["reference"])
    speedup = ref / med["vaelab"]
    print(f"speed-up (float32): {speedup:.2f}x (goal >= {GOAL_SPEEDUP:g}x: "
          f"{'met' if speedup >= GOAL_SPEEDUP else f'missed by {GOAL_SPEEDUP - speedup:.2f}x'}); "
          f"test-loss gap {gap:.2f} nats (goal <= {GOAL_LOSS_GAP:g}: {'met' if gap <= GOAL_LOSS_GAP else 'missed'})")
    if args.bf16:
        b = "vaelab bf16"
        print(f"speed-up (opt-in bfloat16): {ref / med[b]:.2f}x; its final test loss {loss[b]:.2f} nats "
              f"(re-evaluated in float32: {statistics.median(loss32):.2f}), gap to the reference "
              f"{abs(loss[b] - loss['reference']):.2f} nats")
    print(f"compute: {train_flops / 1e9:.1f} GFLOP train + {test_flops / 1e9:.1f} GFLOP test per epoch "
          f"(matrix products); peak {peak / 1e9:.0f} GFLOP/s (float32 2048^2 matmul, {torch.get_num_threads()} "
          f"threads, best of {5 * len(peaks)}); floor {floor * 1000:.0f} ms/epoch")
    load_s = statistics.median(loading)
    print(f"the reference's per-item loading (its two loaders iterated without the model, median of "
          f"{len(loading)}): {load_s:.3f} s of its {ref:.3f} s epoch; without it, {ref - load_s:.3f} s of compute "
          f"and framework work, as in vaelab's {med['vaelab']:.3f} s")
    print(f"largest speed-up any float32 implementation could reach over this reference here: "
          f"{ref / floor:.2f}x (reference epoch / compute floor); vaelab's epoch is {med['vaelab'] / floor:.1f}x "
          f"the floor")
    print(f"load average after the runs: {load_end:.2f}")


if __name__ == "__main__":
    main()
