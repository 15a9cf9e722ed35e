"""Live training in worker processes (vaelab/live_worker.py) as the app drives it (vaelab/ui/session.py).

The worker trains, the session's trainer mirrors it: start, pause, resume, stop and a learning-rate change go
through the worker; a paused mirror holds exactly the state an uninterrupted in-process run reaches at the same
step; a killed worker is reported with its cause and leaves other sessions alone; and the AppTest page drives it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest
import torch

from tests.helpers import chart_specs, new_app, no_exception, session_of, stop_reset, stream_args
from vaelab.data import load_data
from vaelab.frame_stream import HUB
from vaelab.live_worker import STATE_PART_BYTES, _receive_report, _send_report
from vaelab.training import Trainer
from vaelab.ui import session as state
from vaelab.ui.session import TrainingSession
from vaelab.variants import get_variant

WAIT_S = 60  # generous: a busy CI machine starts processes slowly


@pytest.fixture(scope="module")
def data():
    return load_data("mnist-5k")


def _config(variant: str = "ae", **fields):
    base = {"ae": {"hidden_sizes": (32,), "code_size": 4}, "vae": {"hidden_sizes": (32,), "latent_dim": 2}}[variant]
    return get_variant(variant).config_cls(**{**base, "batch_size": 100, "epochs": 3, **fields})


def _session(variant: str = "ae") -> TrainingSession:
    return TrainingSession(variant)


def _wait(session: TrainingSession, until, seconds: float = WAIT_S) -> None:
    """Poll the session (as the page's fragment does) until ``until()``; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, f"timed out: status {session.status}, step {session.step}, " \
                                            f"message {session.message}"
        state.advance(session, 0.1)
        time.sleep(0.05)


def _same_state(a: Trainer, b: Trainer) -> bool:
    weights = all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(),
                                                    strict=True))
    return weights and a.step == b.step and torch.equal(a.generator.get_state(), b.generator.get_state())


@pytest.mark.parametrize("size", [1, STATE_PART_BYTES, 3 * STATE_PART_BYTES + 17])
def test_a_report_arrives_whole_when_its_state_travels_in_parts(size):
    sender, receiver = multiprocessing.Pipe(duplex=True)
    state_bytes = os.urandom(size)
    report = {"base": 3, "rows": [{"step": 1}], "complete": True, "final": False, "failure": None}
    thread = threading.Thread(target=lambda: (_send_report(sender, {**report, "state": state_bytes}),
                                              _send_report(sender, {**report, "state": None})))
    thread.start()  # the parts of a large state fill the pipe: the reader must read while it is written
    first, second = _receive_report(receiver), _receive_report(receiver)
    thread.join()
    assert first == {**report, "state": state_bytes}
    assert second == {**report, "state": None}


def test_start_pause_resume_finish_through_the_worker_match_an_uninterrupted_run(data):
    session = _session()
    assert state.start(session, _config(epochs=10), data, seed=3, device="cpu")
    assert session.worker is not None and session.worker.pid != os.getpid()
    _wait(session, lambda: session.step >= 20)
    state.pause(session)
    assert session.status == state.PAUSED and session.worker is None  # the worker ended, its state is here
    paused_at = session.step
    reference = Trainer("ae", _config(epochs=10), data, seed=3)
    reference.advance(max_steps=paused_at)
    assert _same_state(session.trainer, reference)  # the mirror is the run's exact state
    time.sleep(0.5)
    state.advance(session, 0.1)
    assert session.step == paused_at  # paused: nothing moves

    state.resume(session)
    assert session.running and session.worker is not None
    _wait(session, lambda: session.status != state.RUNNING)
    assert session.status == state.FINISHED and session.trainer.done
    reference.advance(max_steps=reference.total_steps - reference.step)
    assert _same_state(session.trainer, reference)
    def test_rows(trainer):  # one per epoch, from a fixed draw: the same numbers (train rows follow the chunks)
        return [{k: v for k, v in r.items() if k != "time"} for r in trainer.history if r["kind"] == "test"]

    assert len(test_rows(session.trainer)) == 10 and test_rows(session.trainer) == test_rows(reference)
    train_rows = [r for r in session.history if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == sorted({r["step"] for r in train_rows})  # each once, in order
    assert train_rows[-1]["total"] < train_rows[0]["total"]  # it learned


def test_a_mixture_refit_while_the_worker_trains_stays_in_the_run(data):
    """The AE + GMM page's Refit while training: the worker's next reports and epochs must not undo it."""
    session = _session("ae-gmm")
    config = get_variant("ae-gmm").config_cls(hidden_sizes=(32,), code_size=2, n_components=4, batch_size=100,
                                              epochs=50)
    assert state.start(session, config, data, seed=0, device="cpu")
    _wait(session, lambda: bool(session.model.mixture_fitted))  # fitted at the end of the first epoch
    state.change_model(session, lambda model: model.refit_mixture(data.train.images, 3, "diag"))
    assert session.running and session.model.mixture_components == 3
    epoch = session.trainer.epoch
    _wait(session, lambda: session.trainer.epoch >= epoch + 2)  # reports came in, and later epochs refit
    assert session.model.mixture_components == 3 and session.model.mixture_covariance == "diag"
    state.pause(session)
    assert session.model.mixture_components == 3 and session.model.mixture_covariance == "diag"
    state.reset(session)


def test_stop_ends_the_worker_at_once(data):
    session = _session()
    state.start(session, _config(epochs=50), data, seed=0, device="cpu")
    _wait(session, lambda: session.step > 0)
    worker = session.worker
    started = time.monotonic()
    state.reset(session)
    assert time.monotonic() - started < 5
    assert session.status == state.IDLE and session.trainer is None
    assert not worker._process.is_alive()


def test_a_learning_rate_change_through_the_worker_continues_a_diverged_run(data):
    session = _session("vae")
    state.start(session, _config("vae", lr=10.0, epochs=2), data, seed=0, device="cpu")
    _wait(session, lambda: session.status != state.RUNNING)
    assert session.status == state.ERROR and session.trainer.error is not None  # diverged in the worker
    stopped_at = session.step
    assert all(torch.isfinite(v).all() for v in session.model.state_dict().values() if v.is_floating_point())
    assert state.resume_with_lr(session, 1e-3) is None
    assert session.running and session.worker is not None
    _wait(session, lambda: session.step > stopped_at + 5)
    assert session.trainer.config.lr == 1e-3 and session.trainer.error is None
    state.reset(session)


def test_a_killed_worker_is_reported_and_the_run_can_resume(data):
    session = _session()
    state.start(session, _config(epochs=50), data, seed=0, device="cpu")
    _wait(session, lambda: session.step >= 10)
    os.kill(session.worker.pid, signal.SIGKILL)
    _wait(session, lambda: session.status != state.RUNNING)
    assert session.status == state.ERROR
    assert "SIGKILL" in session.message and "Resume" in session.message
    assert session.has_model and session.can_resume
    kept = session.step
    state.resume(session)
    _wait(session, lambda: session.step > kept)
    state.reset(session)


def test_a_killed_workers_run_goes_back_to_its_last_complete_state_exactly(data):
    """Reports between complete ones carry only the weights: a dead worker's run must not keep those weights with an
    older optimizer and RNG, but the whole state of its last complete report, and no history row after it."""
    session = _session()
    state.start(session, _config(epochs=50), data, seed=0, device="cpu")
    _wait(session, lambda: session.step >= 10)
    first = session.step  # the first report is a complete one (on a quiet machine it can be past step 30)
    time.sleep(1.0)  # a second of weights-only reports after it
    _wait(session, lambda: session.step >= max(30, first + 1))
    shown = session.step
    os.kill(session.worker.pid, signal.SIGKILL)
    _wait(session, lambda: session.status != state.RUNNING)
    kept = session.step
    assert 0 < kept < shown  # back to the complete state of the first report
    reference = Trainer("ae", _config(epochs=50), data, seed=0)
    reference.advance(max_steps=kept)
    assert _same_state(session.trainer, reference)
    assert session.trainer.optimizer.state_dict()["state"][0]["step"] == kept  # Adam's own count agrees
    assert max(r["step"] for r in session.history) <= kept
    state.reset(session)


def test_a_second_session_is_unaffected_by_the_first_sessions_killed_worker(data):
    first, second = _session(), _session()
    state.start(first, _config(epochs=50), data, seed=0, device="cpu")
    state.start(second, _config(epochs=2), data, seed=1, device="cpu")
    _wait(first, lambda: first.step > 0)
    os.kill(first.worker.pid, signal.SIGKILL)
    _wait(first, lambda: first.status == state.ERROR)
    _wait(second, lambda: second.status != state.RUNNING)
    assert second.status == state.FINISHED and second.trainer.done and second.message is None
    state.reset(first)


def test_the_page_trains_in_a_worker_and_pause_resume_stop_work(monkeypatch):
    at = new_app().run()
    at.switch_page("pages/ae.py").run()
    session = session_of(at, "ae")
    at.text_input(key="cfg.ae.hidden_sizes").set_value("32")
    at.number_input(key="cfg.ae.epochs").set_value(30)
    at.run()
    at.button(key="panel.ae.start").click().run()
    no_exception(at)
    deadline = time.monotonic() + WAIT_S
    while session_of(at, "ae").step < 20:  # each run is one redraw: it takes what the worker reported
        assert time.monotonic() < deadline
        time.sleep(0.2)
        at.run()
    session = session_of(at, "ae")
    assert session.worker is not None and session.history
    # while it trains, the page draws the stream's components (the browser draws the frames): no live chart, no
    # progress element of the script's own
    streams = stream_args(at)
    assert streams and not chart_specs(at) and not at.get("progress")
    assert {r["view"] for r in streams[0]["regions"]} >= {"progress", "losses", "reconstructions"}
    assert HUB.channel_of(streams[0]["token"]) == session.channel  # the tab's subscription to this run
    progress = [f for f in HUB.newer_than(session.channel, {}) if f.view == "progress"]
    assert progress and "samples/s" in progress[-1].meta["text"]  # the relay's progress line
    at.button(key="panel.ae.pause").click().run()
    assert session.status == state.PAUSED and not stream_args(at)  # the still page again
    assert "samples/s" not in at.get("progress")[0].proto.text and "left" not in at.get("progress")[0].proto.text
    paused_at = session.step
    time.sleep(0.5)
    at.run()
    assert session.step == paused_at
    at.button(key="panel.ae.resume").click().run()
    deadline = time.monotonic() + WAIT_S
    while session.step <= paused_at:
        assert time.monotonic() < deadline
        time.sleep(0.2)
        at.run()
    at.button(key="panel.ae.reset").click().run()  # not saved: it asks, and training stops meanwhile
    assert session.status == state.PAUSED and any(b.key == "panel.ae.discard" for b in at.button)
    at.button(key="panel.ae.keep").click().run()
    assert session.has_model  # kept
    stop_reset(at, "ae")
    assert session_of(at, "ae").status == state.IDLE and not session_of(at, "ae").has_model
    no_exception(at)


def test_a_worker_over_its_memory_limit_fails_alone_with_the_reason(data):
    from vaelab.live_worker import LiveWorker

    big = _config("vae", hidden_sizes=(2048, 2048))  # 6M weights: Adam's state alone needs ~50 MB more
    mirror = Trainer("vae", big, data, seed=0)
    worker = LiveWorker(mirror, memory_limit_mb=60)  # 60 MB above what the worker maps after its imports
    deadline = time.monotonic() + WAIT_S
    while not worker.ended():
        assert time.monotonic() < deadline
        worker.poll()
        time.sleep(0.1)
    assert worker.error is not None and "memory" in worker.error, worker.error
    assert mirror.step == 0 and mirror.error is None  # the mirror keeps the state it had: nothing half-applied


def test_a_worker_nothing_refers_to_any_more_ends(data):
    """A closed tab's session goes away: its worker must not train on for good (a registry kept them alive)."""
    import gc

    sessions = [_session()]
    state.start(sessions[0], _config(epochs=50), data, seed=0, device="cpu")
    _wait(sessions[0], lambda: sessions[0].step > 0)
    process = sessions[0].worker._process
    sessions.clear()
    gc.collect()
    process.join(timeout=10)
    assert not process.is_alive()


def _within(seconds: float, action) -> None:
    """``action()`` in a thread of its own: it must return within ``seconds`` (a deadlock fails the test, no hang)."""
    failures: list[BaseException] = []

    def target() -> None:
        try:
            action()
        except BaseException as error:  # noqa: BLE001 (re-raised in the test's thread)
            failures.append(error)

    thread = threading.Thread(target=target, name="vaelab-test-within", daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: a deadlock"
    if failures:
        raise failures[0]


def test_a_worker_that_ended_while_nothing_polled_it_does_not_hang_the_next_start(data, monkeypatch):
    """A run ended with nobody watching (a reloaded tab), then any Start: ``worker_threads`` asked the dead worker
    ``alive`` under the registry's lock, and its death check took that lock again (issue: the whole server hung)."""
    from vaelab import live_worker

    monkeypatch.delenv("VAELAB_WORKER_THREADS", raising=False)
    abandoned = TrainingSession("ae")
    state.start(abandoned, _config(epochs=50), data, seed=0, device="cpu")
    process = abandoned.worker._process
    os.kill(process.pid, signal.SIGKILL)  # its end is not observed: nothing polls this session any more
    process.join(timeout=WAIT_S)
    _within(20, live_worker.worker_threads)
    fresh = TrainingSession("ae")
    _within(30, lambda: state.start(fresh, _config(epochs=50), data, seed=0, device="cpu"))
    _within(30, lambda: state.reset(fresh))
    _within(20, lambda: state.advance(abandoned, 0.0))  # the abandoned page comes back: the death is reported
    assert abandoned.status == state.ERROR and "training process" in abandoned.message


def test_a_run_that_ends_while_nothing_reads_it_keeps_its_final_state_for_a_late_reader(data):
    """The worker sent its last report into a pipe nobody read, and ended 30 s later anyway: a page (or the keeper
    of unwatched runs) that came back after that found a dead worker and only the run's first complete state."""
    session = _session()
    state.start(session, _config(epochs=1), data, seed=0, device="cpu")  # 40 steps: done within a few seconds
    _wait(session, lambda: session.step > 0)
    time.sleep(40)  # nothing polls: the run ends, its final report waits in the pipe
    _wait(session, lambda: session.status != state.RUNNING)
    assert session.status == state.FINISHED, session.message
    assert session.trainer.done and session.step == session.trainer.total_steps


@pytest.mark.timeout(120)
def test_a_worker_asked_for_frames_sends_the_pages_views_computed_from_its_weights(data):
    from vaelab.live_frames import fixed_batch, reconstructions
    from vaelab.live_worker import LiveWorker

    mirror = Trainer("vae", _config("vae", epochs=10), data, seed=0)  # a few seconds: every view gets its turn
    worker = LiveWorker(mirror, frames=True, threads=1)
    try:
        deadline = time.monotonic() + WAIT_S
        while not worker.ended() and time.monotonic() < deadline:
            worker.poll(wait=0.2)
        assert worker.ended() and worker.error is None, worker.error
        worker.settle()
    finally:
        worker.stop()
    assert set(worker.frames) == {"reconstructions", "codes", "manifold", "samples"}
    recon = worker.frames["reconstructions"]
    assert 0 < recon.step <= mirror.step and recon.arrays["images"].shape == (2, 10, 28, 28)
    if recon.step == mirror.step:  # computed from the final weights: the same pixels here
        expected = reconstructions(mirror.model, fixed_batch(data, 10))["images"]
        assert (recon.arrays["images"].astype(int) - expected.astype(int)).__abs__().max() <= 1
    plain = LiveWorker(Trainer("ae", _config(epochs=1), data, seed=0), threads=1)  # frames are asked for, or none
    try:
        deadline = time.monotonic() + WAIT_S
        while not plain.ended() and time.monotonic() < deadline:
            plain.poll(wait=0.2)
    finally:
        plain.stop()
    assert plain.frames == {}
