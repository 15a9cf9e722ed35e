"""Training throughput: vaelab's Trainer against a reference loop written the common way.

Same 784-400-20 Bernoulli VAE (the `pytorch-example` preset), same data (mnist-5k train, the real MNIST test set
from ../shared/datasets/mnist-test when present, else mnist-5k test), same seed, same epochs. The reference uses a
torch Dataset that turns each image into a tensor per item and a DataLoader with batch 128, and evaluates the test
set through the same kind of loader; the model, loss (summed BCE + analytic KL) and Adam settings are the same.

Prints wall time per epoch (train + test) of both, their ratio, samples/s, final test loss of both, and the
fraction of the CPU's measured peak FLOP rate (a large float32 matmul) that the trainer's steps reach.

    .venv/bin/python benchmarks/bench_training.py [--epochs 10] [--repeats 1]
"""

from __future__ import annotations

import argparse
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


def run_reference(train_u8, train_y, test_u8, test_y, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = ReferenceVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loader = DataLoader(PerItemDataset(train_u8, train_y), batch_size=128, shuffle=True)
    test_loader = DataLoader(PerItemDataset(test_u8, test_y), batch_size=128, shuffle=False)
    epoch_times, test_losses = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for x, _y in train_loader:
            opt.zero_grad()
            logits, mu, logvar = model(x)
            loss = reference_loss(logits, x, mu, logvar)
            loss.backward()
            opt.step()
        model.eval()
        total = 0.0
        with torch.no_grad():
            for x, _y in test_loader:
                logits, mu, logvar = model(x)
                total += reference_loss(logits, x, mu, logvar).item()
        epoch_times.append(time.perf_counter() - t0)
        test_losses.append(total / len(test_u8))
    return {"epoch_times": epoch_times, "test_loss": test_losses[-1]}


def run_trainer(data, epochs: int, seed: int) -> dict:
    config = get_variant("vae").config_cls.from_preset("pytorch-example", epochs=epochs)
    trainer = Trainer("vae", config, data, seed=seed)
    epoch_times = []
    while not trainer.done:
        t0 = time.perf_counter()
        trainer.advance()  # one epoch: train steps + test evaluation
        epoch_times.append(time.perf_counter() - t0)
    train_rows = [r for r in trainer.history if r["kind"] == "train"]
    samples = sum(r["samples_per_s"] for r in train_rows) / len(train_rows)
    test = [r for r in trainer.history if r["kind"] == "test"][-1]
    return {"epoch_times": epoch_times, "test_loss": test["total"], "samples_per_s": samples}


def flops_per_sample() -> float:
    """Multiply-adds x 2 of forward (+ 2x for backward) of the 784-400-20 VAE's linear layers."""
    macs = 784 * 400 + 2 * 400 * 20 + 20 * 400 + 400 * 784
    return 3 * 2 * macs


def measured_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each; the median epoch time is reported")
    args = parser.parse_args()

    test_source = f"idx:{MNIST_TEST}" if (MNIST_TEST / "t10k-images-idx3-ubyte.gz").exists() else None
    data = load_data("mnist-5k", test_source)
    to_u8 = lambda t: (t.reshape(-1, 28, 28) * 255).round().to(torch.uint8).numpy()  # noqa: E731
    train_u8, test_u8 = to_u8(data.train.images), to_u8(data.test.images)
    print(f"data: {len(train_u8)} train (mnist-5k), {len(test_u8)} test ({data.spec['test']}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.epochs} epochs, seed {args.seed}")

    ref_times, ours_times, ref_loss, ours_loss, ours_sps = [], [], [], [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        ref = run_reference(train_u8, data.train.labels.numpy(), test_u8, data.test.labels.numpy(),
                            args.epochs, args.seed)
        ours = run_trainer(data, args.epochs, args.seed)
        ref_times += ref["epoch_times"]
        ours_times += ours["epoch_times"]
        ref_loss.append(ref["test_loss"])
        ours_loss.append(ours["test_loss"])
        ours_sps.append(ours["samples_per_s"])

    ref_epoch, ours_epoch = statistics.median(ref_times), statistics.median(ours_times)
    n_train = len(train_u8)
    peak = measured_peak_flops()
    sps = statistics.median(ours_sps)
    print(f"reference: {ref_epoch:.3f} s/epoch (train+test), {n_train / ref_epoch:,.0f} train samples/s incl. test, "
          f"final test loss {statistics.median(ref_loss):.2f} nats")
    print(f"vaelab   : {ours_epoch:.3f} s/epoch (train+test), {n_train / ours_epoch:,.0f} train samples/s incl. test, "
          f"{sps:,.0f} samples/s in steps, final test loss {statistics.median(ours_loss):.2f} nats")
    print(f"speed-up : {ref_epoch / ours_epoch:.2f}x (goal >= 3x); test-loss gap "
          f"{abs(statistics.median(ours_loss) - statistics.median(ref_loss)):.2f} nats (goal <= 1)")
    print(f"FLOP rate: {sps * flops_per_sample() / 1e9:.1f} GFLOP/s in steps = "
          f"{sps * flops_per_sample() / peak:.1%} of the measured peak ({peak / 1e9:.1f} GFLOP/s, 2048^2 matmul)")
    print(f"medians over {len(ours_times)} epochs x {args.repeats} run(s) each")


if __name__ == "__main__":
    main()
