"""`python -m vaelab`: list variants, train with a progress bar, evaluate and list checkpoints.

Exit status: 0 on success, 1 when a run or a file fails, 2 for a bad flag or value (the message names the field and
its allowed range). Every failure is one line on stderr; one that no check foresaw also writes its traceback to a
report file in the temp folder and names it.
"""

from __future__ import annotations

import argparse
import re
import sys
from functools import partial
from pathlib import Path

from vaelab.config import ConfigError


class UsageError(Exception):
    """Bad command-line input: reported with exit status 2."""


def _parse_sets(config_cls, items: list[str]) -> dict:
    from vaelab.config import parse_value

    values = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set: expected field=value, got {item!r}")
        name, text = item.split("=", 1)
        values[name.strip()] = parse_value(config_cls, name.strip(), text)
    return values


def _format_terms(terms: dict, keys=None) -> str:
    keys = keys or [k for k, v in terms.items() if isinstance(v, float | int) and k not in _ROW_META]
    return "  ".join(f"{k}={figure(terms[k])}" for k in keys if k in terms)


def figure(value: float) -> str:
    """One rounding for every loss figure the CLI prints (train, eval, list): 3 decimals; small diagnostics keep
    3 significant digits."""
    return f"{value:.3f}" if value == 0 or abs(value) >= 0.01 else f"{value:.3g}"


_ROW_META = {"kind", "step", "epoch", "time", "samples_per_s"}


def seed_value(text: str) -> int:
    """argparse type of --seed: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (got {text!r})")
    return value


def device_value(text: str) -> str:
    """argparse type of --device: cpu, cuda, cuda:N or mps, and present on this machine."""
    import torch

    name = text.strip().lower()
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N or mps (got {text!r})")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {count} CUDA device(s); use cpu"
                                             + (f" or cuda:0..{count - 1}" if count else ""))
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError("'mps': no Apple GPU is available here; use cpu")
    return name


def cmd_variants(args) -> int:
    from vaelab.variants import VARIANTS

    width = max(len(k) for k in VARIANTS)
    for key, info in VARIANTS.items():
        print(f"{key:<{width}}  {info.title}")
        if args.verbose:
            print(f"{'':<{width}}  {info.lesson}")
            config_cls = info.config_cls
            for preset in config_cls.PRESETS:
                print(f"{'':<{width}}    preset {preset}: {config_cls.PRESET_NOTES.get(preset, '')}".rstrip(": "))
    return 0


def build_config(variant: str, preset: str | None, sets: list[str], epochs: int | None):
    from vaelab.variants import get_variant

    config_cls = get_variant(variant).config_cls
    overrides = _parse_sets(config_cls, sets)
    if epochs is not None:
        overrides["epochs"] = epochs
    return config_cls.from_preset(preset, **overrides)


def load_requested_data(args):
    """The data of --dataset / --test-dataset. Without --dataset: the app's default ($VAELAB_DATASET or mnist)
    with the app's fallback (the embedded mnist-5k when it cannot be loaded, said in one line on stderr);
    ``args.dataset`` is then set to the source in use. A --dataset given is loaded as it is, or fails."""
    from vaelab.data import default_dataset, load_data, load_with_fallback

    if args.dataset is not None:
        return load_data(args.dataset, args.test_dataset)
    requested = default_dataset()
    data, fallback = load_with_fallback(requested, args.test_dataset)
    args.dataset = requested
    if fallback is not None:
        args.dataset = fallback.used
        if data.test.source == fallback.used:  # a torchvision test source fell back too
            args.test_dataset = None
        print(f"{fallback.summary} ({fallback.used}) instead of {' and '.join(fallback.requested)}; --dataset "
              "picks a source", file=sys.stderr)
    return data


def cmd_train(args) -> int:
    from tqdm import tqdm

    from vaelab import checkpoints
    from vaelab.training import Trainer

    config = build_config(args.variant, args.preset, args.set, args.epochs)
    data = load_requested_data(args)
    trainer = Trainer(args.variant, config, data, seed=args.seed, device=args.device)
    name = args.name or f"{args.variant}-{args.dataset.replace(':', '-').replace('/', '-')}-s{args.seed}"
    print(f"training {args.variant} on {data.spec['train']} (test: {data.spec['test']}): "
          f"{len(data.train.images)} train / {len(data.test.images)} test images, "
          f"{config.epochs} epochs x {trainer.steps_per_epoch} steps", file=sys.stderr)
    interrupted = False
    with tqdm(total=trainer.total_steps, unit="step", dynamic_ncols=True, disable=args.quiet) as bar:
        try:
            while not trainer.done and trainer.error is None:
                before = trainer.step
                rows = trainer.advance(max_steps=trainer.log_every)
                bar.update(trainer.step - before)
                train_rows = [r for r in rows if r["kind"] == "train"]
                if train_rows:
                    bar.set_postfix_str(f"ep {trainer.epoch}  " + _format_terms(train_rows[-1]))
                for r in rows:
                    if r["kind"] == "test":
                        bar.write(f"epoch {r['epoch']:.0f} test: {_format_terms(r)}")
        except KeyboardInterrupt:
            interrupted = True
            bar.write("interrupted: saving what was trained so far")
    if trainer.error:
        print(f"error: {trainer.error}", file=sys.stderr)
        return 1
    if args.out:
        save = partial(checkpoints.save_trainer_to, trainer, Path(args.out), overwrite=True)
    else:
        save = partial(checkpoints.save_trainer, trainer, name, overwrite=args.overwrite)
    path, failure = checkpoints.save_or_rescue(trainer, save)
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr)
        if path is not None:
            print(f"the trained model was saved to {path} instead", file=sys.stderr)
        return 1
    final = trainer.evaluate("test")
    print(f"saved {path}")
    print("test: " + _format_terms(final))
    return 130 if interrupted else 0


def cmd_eval(args) -> int:
    from vaelab.checkpoints import load_checkpoint, restore_trainer
    from vaelab.data import load_data

    ckpt = load_checkpoint(args.checkpoint)
    spec = ckpt.meta.get("dataset", {})
    train = args.dataset or spec.get("train", "mnist-5k")
    test = args.test_dataset or (None if args.dataset else spec.get("test"))
    data = load_data(train, test)
    trainer = restore_trainer(ckpt, data)
    terms = trainer.evaluate("test")
    print(f"{ckpt.variant} {Path(args.checkpoint).name}: {ckpt.meta.get('epochs', '?')} epochs, "
          f"test on {data.spec['test']} ({len(data.test.images)} images)")
    for key, value in terms.items():
        print(f"  {key:<16} {figure(value)}")
    from vaelab.evaluate import METRIC_TITLES, describe

    try:
        results = _evaluate_with_bar(args.checkpoint, data, args.k, args.n, quiet=args.quiet, desc="metrics")
    except ConfigError:
        raise  # a bad --k / --n: exit status 2 in main
    except ValueError as error:  # e.g. a diverged model's non-finite codes
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("metrics:")
    for metric, result in results.items():
        print(f"  {METRIC_TITLES[metric]:<16} {describe(metric, result)}")
    try:
        _print_exact(ckpt, data, EXACT_IMAGES if args.n is None else min(args.n, EXACT_IMAGES))
    except ValueError as error:  # a model with no finite likelihood on the grid
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


EXACT_IMAGES = 100  # test images the exact figures of eval average over (a grid or 2^d codes per image)


def _print_exact(ckpt, data, n: int) -> None:
    """Where they apply (a 1-2-D Gaussian latent, at most 16 latent bits): exact log p(x), ELBO and gap, and the
    importance-weighted bound at K = 1, 10, 100, 1000 against the exact value."""
    from vaelab import posterior
    from vaelab.evaluate import model_inputs

    if not posterior.can_summarise(ckpt.model):
        return
    binarize = (ckpt.meta.get("dataset") or {}).get("binarize", "none")
    x = model_inputs(data.test.images[:n], binarize, int((ckpt.trainer_state or {}).get("seed", 0)))
    y = data.test.labels[:n] if getattr(ckpt.model, "uses_labels", False) else None
    s = posterior.exact_summary(ckpt.model, x, y)
    error = "" if s.quadrature_error is None else f", quadrature error < {max(s.quadrature_error, 1e-4):.1g} nat"
    print(f"exact, mean over {s.images} test images ({s.method}{error}):")
    print(f"  log p(x)         {figure(s.log_px)}")
    print(f"  ELBO             {figure(s.elbo)}")
    print(f"  gap (KL(q||p(z|x))) {figure(s.gap)}   log p(x) = ELBO + gap")
    for k, bound in s.bounds.items():
        print(f"  IW bound K={k:<5} {figure(bound)}   (log p(x) - bound = {figure(s.log_px - bound)}; >= 0 up to "
              "Monte-Carlo error)")


def _evaluate_with_bar(path, data, k: int | None, n: int | None, quiet: bool, desc: str) -> dict:
    """evaluate_checkpoint with a tqdm bar on stderr (results cached in the checkpoint's metadata); k and n
    default to evaluate.DEFAULT_K / DEFAULT_N."""
    from tqdm import tqdm

    from vaelab.evaluate import DEFAULT_K, DEFAULT_N, evaluate_checkpoint

    k = DEFAULT_K if k is None else k
    n = DEFAULT_N if n is None else n

    with tqdm(total=1000, desc=desc, unit="‰", dynamic_ncols=True, disable=quiet, leave=False,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}") as bar:
        def on_progress(done: int, total: int) -> None:
            bar.update(round(1000 * done / total) - bar.n)
        return evaluate_checkpoint(path, data, k=k, n=n, on_progress=on_progress)


def run_with_bars(specs, args, labels: list[str]) -> list:
    """Run the specs on the workers (local processes, or Ray with --ray), one progress bar per run."""
    from tqdm import tqdm

    from vaelab import workers

    width = max(len(label) for label in labels)
    bars = [tqdm(total=1, desc=f"{label:<{width}}", unit="step", position=i, dynamic_ncols=True, leave=True,
                 disable=args.quiet) for i, label in enumerate(labels)]

    def on_progress(i: int, step: int, total: int) -> None:
        bar = bars[i]
        if total and bar.total != total:
            bar.total = total
        bar.n = step
        bar.refresh()

    try:
        return workers.run(specs, workers=args.workers, ray_address=args.ray, on_progress=on_progress)
    finally:
        for bar in bars:
            bar.close()


def cmd_pretrain(args) -> int:
    """Train every variant with its lesson preset (in parallel, on the workers) and save it as
    checkpoints/<variant>/classroom.pt."""
    from vaelab import checkpoints
    from vaelab.classroom import CLASSROOM_PRESETS, checked_variants, lesson_specs
    from vaelab.evaluate import DEFAULT_K, DEFAULT_N, check_settings

    check_settings(DEFAULT_K if args.k is None else args.k, DEFAULT_N if args.n is None else args.n)
    keys = checked_variants(args.only or list(CLASSROOM_PRESETS), "--only")
    data = load_requested_data(args)  # here: a bad source fails before any worker starts
    print(f"preparing the classroom set on {data.spec['train']} (test: {data.spec['test']}) into "
          f"{args.dir or checkpoints.checkpoint_dir()}", file=sys.stderr)
    specs = lesson_specs(args.dataset, args.test_dataset, args.seed, args.device, keys, args.epochs, args.dir)
    failures = 0
    for key, result in zip(keys, run_with_bars(specs, args, keys), strict=True):
        if not result.ok:
            print(f"{key}: error: {result.error}", file=sys.stderr)
            failures += 1
            continue
        path = Path(result.path)
        line = f"saved {path}  ({CLASSROOM_PRESETS[key]} preset, {result.epochs} epochs)"
        if args.metrics:
            try:
                results = _evaluate_with_bar(path, data, args.k, args.n, quiet=args.quiet, desc=f"{key} metrics")
            except ValueError as error:  # e.g. non-finite codes; the checkpoint itself is saved
                print(f"{line}  metrics failed: {error}", file=sys.stderr)
                failures += 1
                continue
            if "log_likelihood" in results:
                line += f"  log p(x) {results['log_likelihood']['mean']:.2f}"
            line += f"  logistic probe {results['probe']['logistic']:.3f}"
        print(line)
    return 1 if failures else 0


def cmd_lessons(args) -> int:
    """Train each variant's default configuration and check that its lesson shows (exit 1 when one fails)."""
    from vaelab.data import load_data
    from vaelab.lessons import check_lesson
    from vaelab.variants import VARIANTS, get_variant

    keys = args.variants or list(VARIANTS)
    for key in keys:
        get_variant(key)  # ConfigError (exit 2) names an unknown variant
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError("--epochs", f"must be a whole number >= 1 (got {args.epochs})")
    data = load_data(args.dataset, args.test_dataset)
    budget = "the default epochs" if args.epochs is None else f"{args.epochs} epoch(s) each"
    print(f"lessons on {data.spec['train']} (test: {data.spec['test']}), seed {args.seed}, {budget}", flush=True)
    width = max(len(k) for k in keys)
    passed = failed = 0
    for key in keys:
        report = check_lesson(key, data, seed=args.seed, device=args.device, epochs=args.epochs)
        verdict = "PASS" if report.passed else "FAIL"
        timing = f"{report.epochs} epochs in {report.train_seconds:.1f} s"
        if report.companion_seconds:
            timing += f" (+ {report.companion_seconds:.1f} s for the net without the penalty)"
        print(f"{key:<{width}}  {verdict}  {timing}", flush=True)
        if report.error:
            print(f"{'':<{width}}    error: {report.error}")
        for check in report.checks:
            print(f"{'':<{width}}    {'ok  ' if check.passed else 'MISS'} {check}")
        for name, value in report.notes.items():
            print(f"{'':<{width}}         {name}: {value:.4g}")
        passed, failed = passed + report.passed, failed + (not report.passed)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_list(args) -> int:
    from vaelab.checkpoint_listing import list_saved  # torch only when a checkpoint is new or changed

    infos = list_saved(args.dir)
    if not infos:
        print("no checkpoints found")
        return 0
    print(f"{'variant':<12} {'name':<32} {'dataset':<24} {'epochs':>6} {'test loss':>10}  created")
    for i in infos:
        if i.error:
            print(f"{i.variant or '?':<12} {i.name:<32} unreadable: {i.error}")
            continue
        loss = "" if i.test_loss is None else figure(i.test_loss)
        print(f"{i.variant:<12} {i.name:<32} {i.dataset_label:<24} {i.epochs:>6} {loss:>10}  {i.created}")
    return 0


def add_worker_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, help="runs at once on this machine (default: one per free core)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run on a Ray cluster instead ('auto', 'ray://host:10001', or 'local'; needs pip install "
                        "ray; also $VAELAB_RAY_ADDRESS)")


def parse_sweep(config_cls, items: list[str]) -> dict[str, list]:
    """--set field=v1,v2 (a list field: v1;v2) -> {field: [values]}; every value checked like --set's."""
    import typing

    from vaelab.config import field_types, parse_value

    grid = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set: expected field=v1,v2,..., got {item!r}")
        name, text = (part.strip() for part in item.split("=", 1))
        is_list = name in field_types(config_cls) and typing.get_origin(field_types(config_cls)[name]) is tuple
        grid[name] = [parse_value(config_cls, name, v) for v in text.split(";" if is_list else ",") if v.strip()]
        if not grid[name]:
            raise UsageError(f"--set {name}: no values")
    return grid


def cmd_sweep(args) -> int:
    """Train the grid x seeds in parallel and print (and write) the final test terms of every run."""
    import csv

    from vaelab import checkpoints
    from vaelab.data import load_data
    from vaelab.variants import get_variant
    from vaelab.workers import sweep_specs

    config_cls = get_variant(args.variant).config_cls
    grid = parse_sweep(config_cls, args.set)
    if args.seeds < 1:
        raise ConfigError("--seeds", f"must be a whole number >= 1 (got {args.seeds})")
    base = build_config(args.variant, args.preset, [], args.epochs)
    for values in _combinations(grid):  # every combination must be a valid config before anything runs
        base.replace(**values)
    load_data(args.dataset, args.test_dataset)
    fields = "-".join(grid) or "seeds"
    specs = sweep_specs(args.variant, base.to_dict(), {k: list(v) for k, v in grid.items()}, args.seeds,
                        args.dataset, args.test_dataset, args.device, args.dir, prefix=f"sweep-{fields}")
    print(f"sweep of {args.variant}: {len(specs)} runs on {args.dataset}", file=sys.stderr)
    results = run_with_bars(specs, args, [s.label for s in specs])
    terms = [t for t in ("reconstruction", "kl", "sparsity", "contractive", "total")
             if any(t in r.test for r in results)]
    header = ["run", *terms, "train s", "samples/s", "checkpoint"]
    rows = [[r.spec.label, *(figure(r.test[t]) if t in r.test else "" for t in terms), f"{r.seconds:.1f}",
             f"{r.samples_per_s:,.0f}", r.path or f"error: {r.error}"] for r in results]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    target = Path(args.csv) if args.csv else Path(args.dir or checkpoints.checkpoint_dir()) / args.variant / \
        f"sweep-{fields}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", *grid, "seed", *terms, "train_seconds", "samples_per_s", "checkpoint", "error"])
        for r in results:
            writer.writerow([r.spec.label, *(_cell(r.spec.config[k]) for k in grid), r.spec.seed,
                             *(r.test.get(t, "") for t in terms), r.seconds, r.samples_per_s, r.path or "",
                             r.error or ""])
    print(f"wrote {target}")
    return 0 if all(r.ok for r in results) else 1


def _cell(value) -> str | float | int:
    """A CSV cell: a list field as its comma-separated text (400,200), as --set takes it."""
    return ",".join(str(v) for v in value) if isinstance(value, list | tuple) else value


def _combinations(grid: dict[str, list]) -> list[dict]:
    import itertools

    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


DATASET_HELP = ("mnist, fashion-mnist, kmnist, mnist-5k, digits or idx:DIR (default: the app's, $VAELAB_DATASET or "
                "mnist; when that cannot be loaded, e.g. offline, the embedded mnist-5k, said on stderr)")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vaelab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("variants", help="list the variant keys with their titles")
    v.add_argument("-v", "--verbose", action="store_true", help="also print the lesson of each")
    v.set_defaults(func=cmd_variants)

    t = sub.add_parser("train", help="train a variant and save a checkpoint")
    t.add_argument("variant", help="variant key (see `variants`)")
    t.add_argument("--dataset", help=DATASET_HELP)
    t.add_argument("--test-dataset", help="test split source if different (e.g. idx:../shared/datasets/mnist-test)")
    t.add_argument("--preset", help="named preset of the variant's config")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field")
    t.add_argument("--epochs", type=int, help="number of epochs (overrides the preset)")
    t.add_argument("--seed", type=seed_value, default=0)
    t.add_argument("--device", type=device_value, default="cpu")
    t.add_argument("--name", help="checkpoint name under checkpoints/<variant>/ (default: variant-dataset-seed)")
    t.add_argument("--out", help="write the checkpoint to this exact path instead")
    t.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint of the same name")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="test terms and metrics (log p(x), probes, ...) of a saved checkpoint")
    e.add_argument("checkpoint", help="path to a .pt checkpoint")
    e.add_argument("--dataset", help="evaluate on this source's test split instead of the stored one")
    e.add_argument("--test-dataset", help="explicit test source")
    e.add_argument("--k", type=int, help="importance samples per image for log p(x) (default 100)")
    e.add_argument("--n", type=int, help="test images for the metrics (default 1000)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval)

    pt = sub.add_parser("pretrain", help="train the classroom set: every variant with its lesson preset")
    pt.add_argument("--dataset", help=DATASET_HELP)
    pt.add_argument("--test-dataset", help="test split source if different")
    pt.add_argument("--epochs", type=int, help="epochs for every model (default: each preset's)")
    pt.add_argument("--only", action="append", metavar="VARIANT", help="train only this variant (repeatable)")
    pt.add_argument("--dir", help="checkpoint directory (default: $VAELAB_CHECKPOINT_DIR or checkpoints)")
    pt.add_argument("--seed", type=seed_value, default=0)
    pt.add_argument("--device", type=device_value, default="cpu")
    pt.add_argument("--no-metrics", dest="metrics", action="store_false",
                    help="skip computing the metrics (stored in each checkpoint for the Compare page)")
    pt.add_argument("--k", type=int, help="importance samples for log p(x) (default 100)")
    pt.add_argument("--n", type=int, help="test images for the metrics (default 1000)")
    pt.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_worker_flags(pt)
    pt.set_defaults(func=cmd_pretrain)

    sw = sub.add_parser("sweep", help="train one variant over a grid of settings and seeds, in parallel")
    sw.add_argument("variant", help="variant key (see `variants`)")
    sw.add_argument("--set", action="append", default=[], metavar="FIELD=V1,V2,...",
                    help="values of a field to sweep (a list field such as hidden_sizes: V1;V2, each 400,200)")
    sw.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 for every setting (default 1)")
    sw.add_argument("--preset", help="named preset the other fields come from")
    sw.add_argument("--epochs", type=int, help="number of epochs (overrides the preset)")
    sw.add_argument("--dataset", default="mnist-5k", help="training source (default mnist-5k)")
    sw.add_argument("--test-dataset", help="test split source if different")
    sw.add_argument("--device", type=device_value, default="cpu")
    sw.add_argument("--dir", help="checkpoint directory (default: $VAELAB_CHECKPOINT_DIR or checkpoints)")
    sw.add_argument("--csv", help="write the table here (default: <dir>/<variant>/sweep-<fields>.csv)")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_worker_flags(sw)
    sw.set_defaults(func=cmd_sweep)

    le = sub.add_parser("lessons", help="train each variant's defaults and check that its lesson shows")
    le.add_argument("variants", nargs="*", metavar="VARIANT", help="variant keys (default: all)")
    le.add_argument("--dataset", default="mnist-5k", help="training source (default mnist-5k, embedded)")
    le.add_argument("--test-dataset", help="test split source if different")
    le.add_argument("--epochs", type=int, help="override every default's epochs (a quick smoke run)")
    le.add_argument("--seed", type=seed_value, default=0)
    le.add_argument("--device", type=device_value, default="cpu")
    le.set_defaults(func=cmd_lessons)

    ls = sub.add_parser("list", help="saved checkpoints")
    ls.add_argument("--dir", help="checkpoint directory (default: $VAELAB_CHECKPOINT_DIR or checkpoints)")
    ls.set_defaults(func=cmd_list)
    return p


def _exit_status(error: Exception) -> int | None:
    """2 for bad input (the message names the field), 1 for a data or checkpoint failure, None for anything else.

    The data and checkpoint modules import torch, so they are looked up only if the command imported them: an
    error of a module that was never imported cannot have been raised."""
    usage, failures = [ConfigError, UsageError], []
    if (data := sys.modules.get("vaelab.data")) is not None:
        usage.append(data.UnknownSourceError)
        failures.append(data.DataError)
    if (checkpoints := sys.modules.get("vaelab.checkpoints")) is not None:
        failures.append(checkpoints.CheckpointError)
    if isinstance(error, tuple(usage)):
        return 2
    return 1 if isinstance(error, tuple(failures)) else None


def main(argv: list[str] | None = None) -> int:
    """Each command imports what it needs: ``variants``, ``list`` and ``--help`` run without torch."""
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        status = _exit_status(exc)
        if status is None:  # a bug, or a failure no check foresaw: one line here, the traceback in a file
            print(f"error: unexpected {type(exc).__name__}: {_first_line(exc)} (full report: "
                  f"{write_error_report(exc, argv)})", file=sys.stderr)
            return 1
        if status == 2:
            parser.exit(2, f"{parser.prog}: error: {exc}\n")
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else "(no message)"


def write_error_report(error: BaseException, argv: list[str] | None) -> str:
    """Write the command line and the full traceback to a new file in the temp folder; its path (or why not)."""
    import tempfile
    import time
    import traceback

    text = (f"python -m vaelab {' '.join(sys.argv[1:] if argv is None else argv)}\n"
            + "".join(traceback.format_exception(error)))
    try:
        fd, path = tempfile.mkstemp(prefix=f"vaelab-error-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log")
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        return f"not written: {e.strerror or e}"
    return path
