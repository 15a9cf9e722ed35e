"""The server's side of the live stream: one thread brings every training run's reports in and relays its frames.

While a run trains, no page script runs for it: every ``RELAY_PERIOD_S`` the relay thread takes the reports each
worker has sent (the run's lease only tried: a tab that drives the run now is left to it), and publishes to the
run's channel of the hub (:data:`vaelab.frame_stream.HUB`):

- ``progress``: the progress line, the fraction done and the run's status (the browser asks the page to redraw
  once the status is no longer ``running``);
- ``losses``: the loss curves (:class:`vaelab.loss_stream.LossSeries`), when new rows came;
- every view the worker computed since the last pass (reconstructions, filters, codes, samples), unchanged.

Nothing is drawn here: a frame is arrays the worker made, or a few numbers and a line of text.

    token = stream_token(session)   # the page hands it to its live component: the tab's subscription
    start_relay()                   # once per server process (app.py)
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from vaelab.frame_stream import HUB, FrameHub
from vaelab.live_frames import Frame
from vaelab.loss_stream import LossSeries
from vaelab.ui import session as state
from vaelab.ui.progress import progress_text
from vaelab.ui.run_store import RUNS, RunStore

RELAY_PERIOD_S = 0.25
PROGRESS = "progress"

log = logging.getLogger(__name__)


@dataclass
class _Relayed:
    """What the relay last published for one run."""

    version: int = -1
    losses: LossSeries | None = None
    frames: dict[str, float] = field(default_factory=dict)  # view -> made_at of the frame published
    progress: tuple | None = None


def stream_token(session: state.TrainingSession, hub: FrameHub = HUB) -> str:
    """The subscription token of the session's channel (made once; only the tabs that hold the run's private
    address token ever draw it)."""
    if session.stream_token is None or hub.channel_of(session.stream_token) is None:
        session.stream_token = hub.open(session.channel)
    return session.stream_token


def made_at(session: state.TrainingSession) -> float:
    """When the worker wrote the report the run's counters and rows come from (now, without a worker)."""
    worker = session.worker
    return worker.reported_at if worker is not None and worker.reported_at else time.time()


def progress_frame(session: state.TrainingSession) -> Frame:
    """The progress line as the page writes it, the fraction done and the run's status."""
    trainer = session.trainer
    text = progress_text(trainer, session.running) if trainer is not None else ""
    meta = {"text": text, "fraction": trainer.progress if trainer is not None else 0.0, "status": session.status,
            "version": session.version, "message": session.message or ""}
    return Frame(PROGRESS, session.step, {}, meta=meta, made_at=made_at(session))


def relay_run(session: state.TrainingSession, hub: FrameHub = HUB, relayed: _Relayed | None = None) -> _Relayed:
    """Publish what is new in ``session`` since ``relayed`` (the newest reports taken first, when the lease is
    free); the updated record."""
    relayed = relayed if relayed is not None and relayed.version == session.version else _Relayed(session.version)
    if session.running:
        state.advance(session, first_wait=0.0)
    if session.trainer is None:
        return relayed
    if relayed.losses is None:
        relayed.losses = LossSeries(exclude=getattr(session.model, "diagnostic_terms", ()))
    if relayed.losses.take(session.history):
        hub.publish(session.channel, relayed.losses.frame(session.version, session.step, made_at(session)))
    worker = session.worker
    for view, frame in list(worker.frames.items()) if worker is not None else ():
        if relayed.frames.get(view) != frame.made_at:
            relayed.frames[view] = frame.made_at
            hub.publish(session.channel, frame)
    progress = progress_frame(session)
    key = (progress.meta["text"], progress.meta["status"], progress.meta["message"])
    if key != relayed.progress:
        relayed.progress = key
        hub.publish(session.channel, progress)
    return relayed


def relay_pass(store: RunStore = RUNS, hub: FrameHub = HUB, records: dict[str, _Relayed] | None = None) -> int:
    """One pass over every run: each running run relayed, channels of runs that no longer exist closed; the number
    of runs relayed. ``records`` (channel -> what was published) carries over between passes."""
    records = {} if records is None else records
    live: set[str] = set()
    relayed = 0
    for _token, _seen, runs, _sessions in store.owners():
        for run in runs:
            live.add(run.channel)
            record = records.get(run.channel)
            if run.running or record is None or record.progress is None or record.progress[1] != run.status:
                records[run.channel] = relay_run(run, hub, record)
                relayed += 1
    for channel in set(records) - live:
        del records[channel]
    for channel in hub.channels() - live:
        hub.close(channel)
    return relayed


_relay: threading.Thread | None = None
# Lock rules: _relay_lock guards _relay alone; the thread starts outside it.
_relay_lock = threading.Lock()


def start_relay(period_s: float = RELAY_PERIOD_S) -> None:
    """Once per process: the relay thread (a pass every ``period_s``)."""
    global _relay
    with _relay_lock:
        if _relay is not None:
            return
        _relay = thread = threading.Thread(target=_relay_forever, args=(period_s,), name="vaelab-relay", daemon=True)
    thread.start()


def _relay_forever(period_s: float) -> None:
    records: dict[str, _Relayed] = {}
    while True:
        began = time.monotonic()
        try:
            relay_pass(records=records)
        except Exception:  # a pass that failed must not end the relay: the next one tries again
            log.exception("relay: a pass failed")
        time.sleep(max(0.02, period_s - (time.monotonic() - began)))
