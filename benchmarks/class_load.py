"""A headless classroom: N simulated students on one server, each a client of Streamlit's WebSocket protocol and of
the live stream (no browser). What the server process costs per training student, and how fresh the pictures are.

Per N in ``--students`` (a fresh server each, ``VAELAB_DATASET=mnist-5k``, loopback only): every student connects
to ``/_stcore/stream``, opens ``--page`` with ``?epochs=E`` (``--epochs``: a run that outlasts the measurement),
presses Start (the button's widget id from the page's own messages), reads its live component's subscription token
from the page and subscribes to ``/_vaelab/live`` with it; all within a few seconds. After ``--warm`` seconds it
measures for ``--seconds``:

- the server process's CPU (user + system, from /proc), in all and per student; its RSS after one visit to the page
  (torch, the dataset and the page's modules loaded) and at the end;
- frame age at arrival (now minus the time the worker or the relay made the frame), p50 and p90 over all students;
- frames per student per second, and stalls (a student that got no progress frame for 3 s or more);
- errors (an exception element on a page, a student that could not start, a closed stream).

The training workers are the server's children and are not counted in its CPU. The benchmark bounds every wait in
time and stops the server (and with it every worker) at the end.

    .venv/bin/python benchmarks/class_load.py [--students 1,4,8,16] [--page vae] [--epochs 500] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import websockets  # noqa: E402
from appserver import load_average, process_cpu, rss_mb, start_server  # noqa: E402
from streamlit.proto.BackMsg_pb2 import BackMsg  # noqa: E402
from streamlit.proto.ClientState_pb2 import ClientState  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402
from streamlit.proto.WidgetStates_pb2 import WidgetState, WidgetStates  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vaelab.frame_stream import LIVE_PATH  # noqa: E402
from vaelab.live_frames import decode_frame  # noqa: E402

STEP_TIMEOUT_S = 90.0  # any one protocol step (a page run, a subscription) must answer within this
STALL_S = 3.0


@dataclass
class Student:
    index: int
    ages: list[float] = field(default_factory=list)
    frames: int = 0
    stalls: int = 0
    error: str | None = None
    started_at: float | None = None


async def page_run(ws, page: str, query: str, widgets: list[WidgetState]) -> list[ForwardMsg]:
    """Ask for a run of ``page`` with ``widgets`` and collect the page's messages until the script finishes."""
    back = BackMsg(rerun_script=ClientState(query_string=query, page_name=page,
                                            widget_states=WidgetStates(widgets=widgets)))
    await ws.send(back.SerializeToString())
    messages = []
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        msg = ForwardMsg.FromString(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT_S))
        messages.append(msg)
        if msg.WhichOneof("type") == "script_finished" and msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
            return messages
    raise TimeoutError(f"{page}: the page did not finish within {STEP_TIMEOUT_S:.0f} s")


def elements(messages: list[ForwardMsg]):
    for msg in messages:
        if msg.WhichOneof("type") == "delta" and msg.delta.WhichOneof("type") == "new_element":
            yield msg.delta.new_element


def start_button_id(messages: list[ForwardMsg]) -> str | None:
    for element in elements(messages):
        if element.WhichOneof("type") == "button" and element.button.label.endswith("Start"):
            return element.button.id
    return None


def stream_token(messages: list[ForwardMsg]) -> str | None:
    for element in elements(messages):
        if element.WhichOneof("type") == "component_instance" and \
                element.component_instance.component_name.endswith("vaelab_live_stream"):
            return json.loads(element.component_instance.json_args)["token"]
    return None


def has_exception(messages: list[ForwardMsg]) -> bool:
    return any(element.WhichOneof("type") == "exception" for element in elements(messages))


async def student(s: Student, base: str, page: str, epochs: int, until: float, measure_from: float) -> None:
    ws_base = base.replace("http://", "ws://")
    try:
        async with websockets.connect(f"{ws_base}/_stcore/stream", subprotocols=["streamlit"], max_size=None) as ws:
            first: list[ForwardMsg] = []
            for _ in range(3):  # the session's first run may end before the page is drawn (navigation only)
                first = await page_run(ws, page, f"epochs={epochs}", [])
                if start_button_id(first) is not None:
                    break
            button = start_button_id(first)
            if button is None or has_exception(first):
                s.error = "no Start button" if button is None else "an exception on the page"
                return
            started = await page_run(ws, page, "", [WidgetState(id=button, trigger_value=True)])
            s.started_at = time.monotonic()
            token = stream_token(started)
            if token is None or has_exception(started):
                s.error = "no live stream after Start" if token is None else "an exception after Start"
                return
            await consume(s, f"{ws_base}{LIVE_PATH}?token={token}", until, measure_from)
    except (OSError, TimeoutError, websockets.WebSocketException) as error:
        s.error = f"{type(error).__name__}: {error}"


async def visit(base: str, page: str) -> None:
    """Open the page once, press nothing."""
    async with websockets.connect(f"{base.replace('http://', 'ws://')}/_stcore/stream", subprotocols=["streamlit"],
                                  max_size=None) as ws:
        for _ in range(3):
            if start_button_id(await page_run(ws, page, "", [])) is not None:
                return


async def consume(s: Student, url: str, until: float, measure_from: float) -> None:
    async with websockets.connect(url, max_size=None) as live:
        last_progress = time.monotonic()
        while time.monotonic() < until:
            try:
                data = await asyncio.wait_for(live.recv(), max(0.1, min(STALL_S, until - time.monotonic())))
            except TimeoutError:
                continue
            now = time.monotonic()
            frame = decode_frame(data)
            if now < measure_from:
                last_progress = now
                continue
            s.frames += 1
            if frame.made_at:
                s.ages.append(time.time() - frame.made_at)
            if frame.view == "progress":
                if now - last_progress >= STALL_S:
                    s.stalls += 1
                last_progress = now
                if frame.meta.get("status") != "running":
                    return  # the run ended (or failed) before the measurement did


async def classroom(base: str, page: str, n: int, epochs: int, warm: float, seconds: float,
                    server_pid: int) -> dict:
    students = [Student(i) for i in range(n)]
    await visit(base, page)  # the server's one-off costs (torch, the dataset, the page's modules) before the baseline
    rss_before = rss_mb(server_pid)
    began = time.monotonic()
    spread = min(5.0, 0.25 * n)  # everyone presses Start within 5 s
    measure_from = began + spread + warm + 5.0
    until = measure_from + seconds

    async def late(s: Student) -> None:
        await asyncio.sleep(spread * s.index / max(1, n))
        await student(s, base, page, epochs, until, measure_from)

    tasks = [asyncio.create_task(late(s)) for s in students]
    await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
    cpu0, t0 = process_cpu(server_pid), time.monotonic()
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    cpu1, wall = process_cpu(server_pid), time.monotonic() - t0
    await asyncio.wait_for(asyncio.gather(*tasks), STEP_TIMEOUT_S)
    ages = [a for s in students for a in s.ages]
    deciles = statistics.quantiles(ages, n=10) if len(ages) >= 10 else [float("nan")] * 9
    return {"students": n, "server_cores": (cpu1 - cpu0) / wall, "per_student": (cpu1 - cpu0) / wall / n,
            "age_p50": statistics.median(ages) if ages else float("nan"), "age_p90": deciles[8],
            "frames_per_student_s": sum(s.frames for s in students) / n / seconds,
            "stalls": sum(s.stalls for s in students), "rss_before": rss_before, "rss_after": rss_mb(server_pid),
            "errors": [f"student {s.index}: {s.error}" for s in students if s.error]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", default="1,4,8,16")
    parser.add_argument("--page", default="vae")
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--warm", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(v) for v in args.students.split(",")):
            server = start_server(Path(tmp))
            try:
                row = asyncio.run(classroom(server.url, args.page, n, args.epochs, args.warm, args.seconds,
                                            server.process.pid))
            finally:
                server.stop()
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\npage {args.page}, epochs {args.epochs}, {args.seconds:g} s measured after everyone started; "
          f"load average {load_average():.2f}")
    print("| students | server cores | per student | frame age p50 / p90 (s) | frames / student / s | stalls | "
          "server RSS before / after (MB) | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['students']} | {r['server_cores']:.3f} | {r['per_student']:.3f} | {r['age_p50']:.2f} / "
              f"{r['age_p90']:.2f} | {r['frames_per_student_s']:.1f} | {r['stalls']} | {r['rss_before']:.0f} / "
              f"{r['rss_after']:.0f} | {len(r['errors'])} |")
        for line in r["errors"][:5]:
            print(f"  {line}")


if __name__ == "__main__":
    main()
