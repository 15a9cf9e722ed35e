"""The server's side of the live stream: loss curves built up row by row (thinned as the chart draws them, growing
only at the end while the thinning stays), and the relay that takes a real worker's reports and publishes its
progress, curves and pictures to the run's channel, the end of the run included."""

import math
import time

import numpy as np
import pytest

from vaelab.data import load_data
from vaelab.frame_stream import FrameHub
from vaelab.loss_stream import LossSeries
from vaelab.ui import session as state
from vaelab.ui.live_relay import relay_pass, stream_token
from vaelab.ui.run_store import RunStore
from vaelab.ui.session import TrainingSession
from vaelab.variants import get_variant


def _rows(n: int, start: int = 0) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        rows.append({"kind": "train", "step": i + 1, "epoch": (i + 1) / 40, "reconstruction": 100.0 / (i + 1),
                     "kl": float(i % 7), "total": 100.0 / (i + 1) + i % 7, "samples_per_s": 1e4})
        if (i + 1) % 40 == 0:
            rows.append({"kind": "test", "step": i + 1, "epoch": (i + 1) / 40, "reconstruction": 90.0 / (i + 1),
                         "kl": 3.0, "total": 90.0 / (i + 1) + 3.0})
    return rows


def test_the_curves_are_the_rows_averaged_in_complete_groups_and_only_grow_while_the_stride_stays():
    history = _rows(2500)
    series = LossSeries(max_points=1000)
    series.take(history[:1200])
    early = series.frame(version=1, step=0, made_at=0.0)
    series.take(history)
    late = series.frame(version=1, step=0, made_at=0.0)
    train = [r for r in history if r["kind"] == "train"]
    assert late.meta["stride"] == 4 and late.meta["terms"] == ["reconstruction", "kl", "total"]
    for term in ("reconstruction", "kl", "total"):
        expected = [sum(r[term] for r in train[i:i + 4]) / 4 for i in range(0, len(train) // 4 * 4, 4)]
        np.testing.assert_allclose(late.arrays[f"train.{term}"], expected, rtol=1e-6)
    test_rows = [r for r in history if r["kind"] == "test"]  # 62 rows: stride 4 too (one stride for the chart)
    assert len(late.arrays["test_epoch"]) == len(test_rows) // 4
    # 1,200 rows had stride 2: the stride doubled, so the browser draws anew; within one stride the arrays only grow
    assert early.meta["stride"] == 2
    series.take(history + _rows(300, start=2500))
    grown = series.frame(version=1, step=0, made_at=0.0)
    assert grown.meta["stride"] == 4
    n = len(late.arrays["train.total"])
    assert len(grown.arrays["train.total"]) > n
    np.testing.assert_array_equal(grown.arrays["train.total"][:n], late.arrays["train.total"])


def test_a_history_cut_back_is_taken_again_from_its_start_and_a_total_that_repeats_one_term_is_left_out():
    series = LossSeries()
    rows = [{"kind": "train", "epoch": i / 10, "step": i, "reconstruction": float(i), "total": float(i)}
            for i in range(1, 30)]
    series.take(rows)
    assert series.shown_terms == ["reconstruction"]
    series.take(rows[:10])  # a dead worker's last rows dropped
    frame = series.frame(version=2, step=10, made_at=0.0)
    assert frame.arrays["train.reconstruction"].tolist() == [float(i) for i in range(1, 11)]
    assert "train.total" not in frame.arrays
    assert all(math.isfinite(v) for v in frame.arrays["train_epoch"])


@pytest.mark.timeout(120)
def test_the_relay_publishes_a_workers_progress_curves_and_pictures_and_the_end_of_the_run():
    data = load_data("mnist-5k")
    hub, store = FrameHub(), RunStore()
    token = store.new_token()
    session = store.run(token, "vae", lambda: TrainingSession("vae"))
    config = get_variant("vae").config_cls(hidden_sizes=(32,), latent_dim=2, batch_size=100, epochs=25)
    channel_token = stream_token(session, hub)
    assert hub.channel_of(channel_token) == session.channel
    assert state.start(session, config, data, seed=0, device="cpu"), session.message
    records: dict = {}
    seen: dict[str, int] = {}
    received: dict[str, list] = {}
    statuses = []
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            relay_pass(store, hub, records)
            for frame in hub.newer_than(session.channel, seen) or []:
                received.setdefault(frame.view, []).append(frame)
                if frame.view == "progress":
                    statuses.append(frame.meta["status"])
            if statuses and statuses[-1] != state.RUNNING:
                break
            time.sleep(0.1)
    finally:
        state.reset(session) if session.running else None
    assert statuses[-1] == state.FINISHED, session.message
    assert {"progress", "losses", "reconstructions", "codes", "samples"} <= set(received)
    final = received["progress"][-1]
    assert final.step == session.trainer.total_steps and final.meta["text"].startswith("Finished")
    losses = received["losses"][-1]
    train_rows = [r for r in session.history if r["kind"] == "train"]
    assert len(losses.arrays["train_epoch"]) == len(train_rows)  # short run: every row, unthinned
    np.testing.assert_allclose(losses.arrays["train.kl"], [r["kl"] for r in train_rows], rtol=1e-6)
    codes = received["codes"][-1]
    assert codes.arrays["codes"].shape == (len(data.test), 2)  # the map's test images (mnist-5k: all 1,000)
    steps = [f.step for f in received["reconstructions"]]
    assert steps == sorted(steps) and len(steps) >= 2  # pictures followed training
    store.forget(token)
    relay_pass(store, hub, records)
    assert hub.channels() == set() and records == {}  # a forgotten run's channel goes
