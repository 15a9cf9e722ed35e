"""Runs that outlive their tab (vaelab/ui/run_store.py, lease.py, run_keeper.py): a reload or a second tab with the
run's token finds the same run; a run nobody watches is brought in, paused after the grace period and autosaved; two
threads never drive one run at once, and never start two workers for it.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.helpers import new_app, no_exception, session_of, set_form, wait_for
from vaelab.checkpoints import checkpoint_path, load_checkpoint
from vaelab.data import load_data
from vaelab.ui import run_keeper, run_store
from vaelab.ui import session as state
from vaelab.ui.lease import Lease, RunBusy
from vaelab.ui.run_store import RUN_PARAM, RUNS, RunStore
from vaelab.ui.run_token import TOKEN_KEY
from vaelab.variants import get_variant

WAIT_S = 60


@pytest.fixture(scope="module")
def data():
    return load_data("mnist-5k")


def _config(**fields):
    return get_variant("ae").config_cls(**{"hidden_sizes": (32,), "code_size": 4, "batch_size": 100, "epochs": 50,
                                           **fields})


def _wait(session, until, seconds: float = WAIT_S) -> None:
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, f"timed out: {session.status} at step {session.step}: {session.message}"
        state.advance(session, 0.0)
        time.sleep(0.05)


def _in_thread(action, seconds: float = 30):
    """``action()``'s result from another thread (which must finish within ``seconds``)."""
    out: list = []

    def target() -> None:
        try:
            out.append(("value", action()))
        except Exception as error:  # noqa: BLE001 (raised again in the test's thread)
            out.append(("error", error))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the other thread still waits"
    kind, value = out[0]
    if kind == "error":
        raise value
    return value


# -- the lease -------------------------------------------------------------------------------------------------------
def test_a_lease_is_one_threads_at_a_time_re_entrant_and_never_waited_on_past_its_deadline():
    lease = Lease()
    assert lease.try_take() and lease.try_take()  # the holder may take it again
    assert _in_thread(lease.try_take) is False
    started = time.monotonic()
    assert _in_thread(lambda: lease.take(timeout=0.3)) is False
    assert 0.25 < time.monotonic() - started < 5
    with pytest.raises(RuntimeError):
        _in_thread(lease.give)  # only its holder gives it back
    lease.give()
    assert _in_thread(lease.try_take) is False  # still held once
    lease.give()
    assert _in_thread(lease.try_take) is True  # free: another thread takes it (and keeps it)
    with pytest.raises(RunBusy), lease.driving(timeout=0.1):
        pass


def test_a_command_on_a_run_another_thread_drives_is_refused_with_a_message_and_changes_nothing(monkeypatch):
    monkeypatch.setattr("vaelab.ui.lease.COMMAND_WAIT_S", 0.2)
    session = state.TrainingSession("ae")
    assert _in_thread(session.lease.try_take)  # another tab drives it (and keeps the lease)
    state.reset(session)
    assert session.status == state.IDLE and "busy" in session.message
    assert state.advance(session) == []  # a redraw does not wait for it either


# -- the store -------------------------------------------------------------------------------------------------------
def test_a_store_makes_a_tokens_run_once_and_forgets_it_on_request():
    store = RunStore()
    token = store.new_token()
    assert store.known(token) and not store.known("made-up") and not store.known(None)
    assert len(token) >= 20 and token != store.new_token()
    made = []
    first = store.run(token, "ae", lambda: made.append(1) or object())
    assert store.run(token, "ae", lambda: made.append(1) or object()) is first and made == [1]
    seen = store.owners()[0][1]
    time.sleep(0.01)
    store.touch(token)
    assert store.owners()[0][1] > seen
    store.forget(token)
    assert not store.known(token)


def test_a_reload_with_the_runs_token_finds_the_same_run_and_a_made_up_token_gets_a_new_one():
    at = new_app().run()
    at.switch_page("pages/ae.py").run()
    no_exception(at)
    set_form(at, "ae", {"epochs": 5})
    at.button(key="panel.ae.start").click().run()
    wait_for(at, "ae", lambda s: s.step > 0, "the first steps")
    run = session_of(at, "ae")
    assert run.running or run.status == "finished"
    token = at.session_state[TOKEN_KEY]
    assert at.query_params[RUN_PARAM] == token  # the address bar holds it: a reload brings it back

    reloaded = new_app()  # a new Streamlit session, as a reload (or a second tab with the same address) makes
    reloaded.query_params[RUN_PARAM] = token
    reloaded.run()
    reloaded.switch_page("pages/ae.py").run()
    no_exception(reloaded)
    assert session_of(reloaded, "ae") is run  # the same run: its history, its model, its status
    assert reloaded.session_state[TOKEN_KEY] == token
    status_lines = [m.value for m in reloaded.markdown if "badge[" in m.value]
    assert status_lines and "Not started" not in status_lines[0] and "Training" in status_lines[0], status_lines

    stranger = new_app()
    stranger.query_params[RUN_PARAM] = "made-up-token"
    stranger.run()
    stranger.switch_page("pages/ae.py").run()
    no_exception(stranger)
    assert stranger.session_state[TOKEN_KEY] != "made-up-token"
    assert session_of(stranger, "ae") is not run and not session_of(stranger, "ae").has_model


# -- the keeper ------------------------------------------------------------------------------------------------------
def _unwatched_run(data, store: RunStore, **fields):
    token = store.new_token()
    run = store.run(token, "ae", lambda: state.TrainingSession("ae"))
    state.start(run, _config(**fields), data, seed=0, device="cpu")
    _wait(run, lambda: run.step > 0)
    return token, run, store.owners()[0][1]


def test_a_run_nobody_watches_is_paused_after_the_grace_period_autosaved_exactly_and_archived(data):
    store = RunStore()
    token, run, seen = _unwatched_run(data, store)
    assert run_keeper.look_after(store, now=seen + 1, grace=60) == []  # a tab is open: left to it
    step = run.step
    run_keeper.look_after(store, now=seen + run_keeper.POLL_AFTER_S + 1, grace=60)
    assert run.running  # within the grace period: it trains on, its reports brought in
    deadline = time.monotonic() + WAIT_S
    while run.step <= step:
        assert time.monotonic() < deadline
        time.sleep(0.2)
        run_keeper.look_after(store, now=seen + run_keeper.POLL_AFTER_S + 1, grace=60)
    worker = run.worker
    mirror = run.trainer
    done = run_keeper.look_after(store, now=seen + 61, grace=60)
    assert "archived" in done[-1] and worker.ended()
    assert run.archived == checkpoint_path("ae", run_keeper.autosave_name(token))
    assert not run.has_model and run.worker is None and "Paused after" in run.message  # its memory went back
    saved = load_checkpoint(run.archived)
    assert saved.meta["steps"] == mirror.step > step  # the worker's exact state at the pause
    assert token not in saved.path.name  # the listing, seen by every tab, shows no token
    assert run_keeper.look_after(store, now=seen + 120, grace=60) == []  # archived once


def test_an_archived_run_comes_back_from_its_autosave_when_its_tab_returns():
    at = new_app().run()
    at.switch_page("pages/ae.py").run()
    set_form(at, "ae", {"epochs": 5})
    at.button(key="panel.ae.start").click().run()
    at.run()
    at.button(key="panel.ae.pause").click().run()
    run = session_of(at, "ae")
    step, token = run.step, at.session_state[TOKEN_KEY]
    assert run.status == state.PAUSED and step > 0
    seen = next(s for t, s, _, _ in RUNS.owners() if t == token)
    run_keeper.look_after(RUNS, now=seen + 61, grace=60)
    assert run.archived is not None and not run.has_model

    back = new_app()  # the student's tab comes back (a reload after the grace period)
    back.query_params[RUN_PARAM] = token
    back.run()
    back.switch_page("pages/ae.py").run()
    no_exception(back)
    again = session_of(back, "ae")
    assert again is run and again.status == state.PAUSED and again.step == step and again.can_resume
    assert again.checkpoint.path.stem == run_keeper.autosave_name(token)
    assert any("Restored from its autosave" in i.value for i in back.info)


def test_a_run_that_ends_unwatched_ends_properly_and_is_autosaved(data):
    store = RunStore()
    token, run, seen = _unwatched_run(data, store, epochs=1)
    process = run.worker._process
    deadline = time.monotonic() + WAIT_S
    while run.running:
        assert time.monotonic() < deadline
        time.sleep(0.2)
        run_keeper.look_after(store, now=seen + run_keeper.POLL_AFTER_S + 1, grace=3600)
    assert run.status == state.FINISHED and run.trainer.done
    process.join(timeout=10)
    assert not process.is_alive()
    assert load_checkpoint(checkpoint_path("ae", run_keeper.autosave_name(token))).meta["steps"] == run.step


def test_a_run_whose_tab_is_still_connected_is_watched_however_long_ago_its_page_last_ran(data):
    """A tab in the background (its timers throttled) or on another page of the app reruns nothing for minutes, but
    its connection is open: its run trains on. Once the server says the tab is gone, the grace period counts."""
    store = RunStore()
    token, run, seen = _unwatched_run(data, store)
    store.touch(token, "tab-1")
    open_tabs = {"tab-1"}
    later = seen + 3600
    assert run_keeper.look_after(store, now=later, grace=60, connected=open_tabs.__contains__) == []
    assert run.running and store.owners()[0][3] == {"tab-1"}
    open_tabs.clear()  # the tab closed
    run_keeper.look_after(store, now=later + 59, grace=60, connected=open_tabs.__contains__)  # polled, trains on
    assert run.running and store.owners()[0][3] == set()  # within the grace period since it was last connected
    done = run_keeper.look_after(store, now=later + 61, grace=60, connected=open_tabs.__contains__)
    assert "archived" in done[-1] and run.archived is not None


def test_the_keeper_leaves_a_run_that_a_tab_drives_and_forgets_tokens_unseen_for_hours(data):
    store = RunStore()
    token, run, seen = _unwatched_run(data, store)
    assert _in_thread(run.lease.try_take)  # a tab's thread drives it now
    assert run_keeper.look_after(store, now=seen + 3600, grace=60) == []
    assert run.running  # not paused behind the tab's back
    run.lease = Lease()  # that tab's thread went away (a test's shortcut)
    state.reset(run)
    idle = store.new_token()
    store.run(idle, "ae", lambda: state.TrainingSession("ae"))
    later = time.monotonic() + run_keeper.FORGET_AFTER_S + 1
    run_keeper.look_after(store, now=later, grace=60)
    assert not store.known(token) and not store.known(idle)


def test_two_tabs_resuming_one_run_at_once_start_one_worker(data):
    store = RunStore()
    _, run, _ = _unwatched_run(data, store)
    state.pause(run)
    assert run.status == state.PAUSED
    barrier = threading.Barrier(2)

    def resume_and_report():
        barrier.wait()
        state.resume(run)
        return run.worker

    results: list = []
    threads = [threading.Thread(target=lambda: results.append(resume_and_report()), daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2 and results[0] is results[1] is not None  # one worker, seen by both
    state.reset(run)


def test_the_grace_period_setting_is_checked(monkeypatch):
    from vaelab.config import ConfigError

    for bad in ("2", "ten", "nan", "1e9"):
        monkeypatch.setenv(run_store.GRACE_ENV, bad)
        with pytest.raises(ConfigError, match=f"{run_store.GRACE_ENV}: .*5 to 86400"):
            run_store.grace_s()
    monkeypatch.setenv(run_store.GRACE_ENV, "9")
    assert run_store.grace_s() == 9
    monkeypatch.delenv(run_store.GRACE_ENV)
    assert run_store.grace_s() == run_store.GRACE_S
