"""The relay of the live stream: frames published in one thread reach the subscribed WebSocket client as compact
bytes, only with a token the hub gave, newest only for a slow client, and the stream ends when its channel closes.
A real uvicorn server on a free localhost port serves the route, as the app's server would."""

import asyncio
import socket
import threading
import time

import numpy as np
import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from vaelab.frame_stream import LIVE_PATH, UNKNOWN_TOKEN_CLOSE, FrameHub
from vaelab.live_frames import Frame, decode_frame, encode_frame

pytestmark = pytest.mark.timeout(60)


def _frame(step: int, view: str = "reconstructions") -> Frame:
    images = np.full((2, 3, 4, 4), step % 256, dtype=np.uint8)
    return Frame(view, step, {"images": images, "codes": np.arange(6, dtype=np.float16).reshape(3, 2)}, 0.0)


@pytest.fixture
def served():
    hub = FrameHub()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[WebSocketRoute(LIVE_PATH, hub.endpoint)]),
                                           host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield hub, f"ws://127.0.0.1:{port}{LIVE_PATH}"
    server.should_exit = True
    thread.join(10)


def test_a_frame_survives_the_wire_byte_for_byte():
    frame = _frame(7)
    back = decode_frame(encode_frame(frame))
    assert back.view == frame.view and back.step == 7
    for name, array in frame.arrays.items():
        assert back.arrays[name].dtype == array.dtype and np.array_equal(back.arrays[name], array)
    assert len(encode_frame(frame)) < frame.nbytes + 300  # raw bytes and a short header: no base64, no PNG
    with pytest.raises(ValueError, match="allowed: uint8"):
        encode_frame(Frame("x", 0, {"bad": np.zeros(2, dtype=np.complex64)}, 0.0))


def test_frames_reach_the_subscriber_and_only_with_a_token_the_hub_gave(served):
    hub, url = served
    token = hub.open("run-1")

    async def scenario():
        async with websockets.connect(f"{url}?token=wrong") as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == UNKNOWN_TOKEN_CLOSE
        async with websockets.connect(f"{url}?token={token}") as ws:
            threading.Thread(target=lambda: [hub.publish("run-1", _frame(s)) or time.sleep(0.05)
                                             for s in (1, 2, 3)]).start()
            steps = []
            while not steps or steps[-1] < 3:
                steps.append(decode_frame(await asyncio.wait_for(ws.recv(), 10)).step)
            assert steps == sorted(set(steps)) and steps[-1] == 3
            hub.close("run-1")
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)

    asyncio.run(scenario())


def test_a_slow_subscriber_gets_the_newest_frame_of_each_view_not_a_queue(served):
    hub, url = served
    token = hub.open("run-2")

    async def scenario():
        async with websockets.connect(f"{url}?token={token}", max_size=None) as ws:
            for step in range(1, 201):  # published while the client reads nothing
                hub.publish("run-2", _frame(step))
                hub.publish("run-2", _frame(step, "codes"))
            await asyncio.sleep(0.5)
            received = []
            try:
                while True:
                    received.append(decode_frame(await asyncio.wait_for(ws.recv(), 1.0)))
            except TimeoutError:
                pass
            return received

    received = asyncio.run(scenario())
    newest = {view: max(f.step for f in received if f.view == view) for view in ("reconstructions", "codes")}
    assert newest == {"reconstructions": 200, "codes": 200}
    assert len(received) < 40, f"{len(received)} frames for 400 published: a queue, not the newest"


def test_a_subscriber_that_goes_away_while_nothing_is_published_is_let_go_at_once(served):
    """A tab closed between two frames: the route notices the disconnect itself (it used to wait for the next frame
    for good, which kept the server from shutting down and the subscription in memory)."""
    hub, url = served
    token = hub.open("run-3")

    async def scenario():
        ws = await websockets.connect(f"{url}?token={token}")
        await asyncio.sleep(0.3)
        assert hub.subscribers("run-3") == 1
        ws.transport.abort()  # gone without a goodbye, as a closed laptop
        for _ in range(50):
            if hub.subscribers("run-3") == 0:
                return True
            await asyncio.sleep(0.1)
        return False

    assert asyncio.run(scenario()), "the route still waits on a subscriber that left"
    assert hub.channels() == {"run-3"}  # the channel stays for the next tab


def test_the_views_asked_for_are_the_only_ones_sent(served):
    hub, url = served
    token = hub.open("run-4")

    async def scenario():
        async with websockets.connect(f"{url}?token={token}&views=codes,progress") as ws:
            hub.publish("run-4", _frame(1))
            hub.publish("run-4", _frame(2, "codes"))
            return decode_frame(await asyncio.wait_for(ws.recv(), 10))

    assert asyncio.run(scenario()).view == "codes"
