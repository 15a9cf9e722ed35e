"""The relay of the live stream (docs/live-stream.md, step 2): frames published by whoever holds a run, delivered to
the browser tab subscribed to it over a WebSocket route of the app's own server. Nothing is drawn here.

    hub = FrameHub()
    token = hub.open("run-17")              # handed to the one tab that shows run-17
    hub.publish("run-17", frame)            # any thread; keeps only the newest frame of each view
    WebSocketRoute(LIVE_PATH, hub.endpoint) # ws://host/_vaelab/live?token=...: each new frame once, as bytes

A slow tab never queues: it gets the newest frame of each view when it is ready for more. A frame on the wire is
``live_frames.encode_frame``'s bytes, so a canvas takes uint8 pixels as they come.

Locking: ``FrameHub._lock`` guards the channel and token tables and each channel's newest frames and version; it is
held only to read or write them, never across a send, a wait or a call that takes another lock.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from dataclasses import dataclass, field

from starlette.websockets import WebSocketDisconnect

from vaelab.live_frames import Frame, encode_frame

LIVE_PATH = "/_vaelab/live"
UNKNOWN_TOKEN_CLOSE = 4403  # the WebSocket close code for a token this server never gave (or has forgotten)


@dataclass
class _Channel:
    newest: dict[str, tuple[int, Frame]] = field(default_factory=dict)  # view -> (version, frame)
    version: int = 0
    waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=set)


class FrameHub:
    """Channels of newest frames, one per run, and the tokens that may subscribe to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._tokens: dict[str, str] = {}  # token -> channel

    def open(self, channel: str) -> str:
        """A new subscription token for ``channel`` (128 random bits); the channel is made if it is new."""
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._channels.setdefault(channel, _Channel())
            self._tokens[token] = channel
        return token

    def close(self, channel: str) -> None:
        """Forget a channel and its tokens; its subscribers stop after their current frame."""
        with self._lock:
            gone = self._channels.pop(channel, None)
            for token in [t for t, c in self._tokens.items() if c == channel]:
                del self._tokens[token]
        if gone is not None:
            _wake(gone.waiters)

    def publish(self, channel: str, frame: Frame) -> None:
        """Keep ``frame`` as its view's newest in ``channel`` and wake its subscribers (any thread)."""
        with self._lock:
            found = self._channels.get(channel)
            if found is None:
                return
            found.version += 1
            found.newest[frame.view] = (found.version, frame)
            waiters = set(found.waiters)
        _wake(waiters)

    def subscribers(self, channel: str) -> int:
        """How many tabs are subscribed to ``channel`` now."""
        with self._lock:
            found = self._channels.get(channel)
            return len(found.waiters) if found is not None else 0

    def channels(self) -> set[str]:
        with self._lock:
            return set(self._channels)

    def channel_of(self, token: str | None) -> str | None:
        with self._lock:
            return self._tokens.get(token or "")

    def newer_than(self, channel: str, seen: dict[str, int], views: set[str] | None = None) -> list[Frame] | None:
        """The newest frame of each view (of ``views``, default all) whose version is past ``seen[view]`` (updated);
        None once closed."""
        with self._lock:
            found = self._channels.get(channel)
            if found is None:
                return None
            fresh = [(view, version, frame) for view, (version, frame) in found.newest.items()
                     if version > seen.get(view, 0) and (views is None or view in views)]
        for view, version, _ in fresh:
            seen[view] = version
        return [frame for _, _, frame in sorted(fresh, key=lambda item: item[1])]

    async def endpoint(self, websocket) -> None:
        """The WebSocket route: ``?token=`` names the subscription, ``&views=a,b`` the views wanted (default all);
        each new frame is sent once, newest only."""
        channel = self.channel_of(websocket.query_params.get("token"))
        wanted = websocket.query_params.get("views")
        views = {v for v in wanted.split(",") if v} if wanted else None
        await websocket.accept()
        if channel is None:
            await websocket.close(code=UNKNOWN_TOKEN_CLOSE)
            return
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        seen: dict[str, int] = {}
        self._watch(channel, waiter, add=True)
        # the client sends nothing, but its going away must be heard between frames too: a tab closed while no frame
        # came kept this route waiting for good (and the server from shutting down)
        listening = asyncio.ensure_future(websocket.receive())
        try:
            while True:
                waiter[1].clear()
                frames = self.newer_than(channel, seen, views)
                if frames is None:
                    await websocket.close()
                    return
                for frame in frames:
                    await websocket.send_bytes(encode_frame(frame))
                if frames:
                    continue
                woken = asyncio.ensure_future(waiter[1].wait())
                done, _ = await asyncio.wait({woken, listening}, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                if listening in done:
                    if listening.result().get("type") == "websocket.disconnect":
                        return
                    listening = asyncio.ensure_future(websocket.receive())  # a message from the client: ignored
        except (WebSocketDisconnect, RuntimeError, OSError):  # the tab went away mid-send: nothing to keep
            return
        finally:
            listening.cancel()
            self._watch(channel, waiter, add=False)

    def _watch(self, channel: str, waiter, add: bool) -> None:
        with self._lock:
            found = self._channels.get(channel)
            if found is not None:
                (found.waiters.add if add else found.waiters.discard)(waiter)


HUB = FrameHub()  # the server process's one hub: app.py mounts its endpoint, the relay publishes to it


def _wake(waiters) -> None:
    """Set each waiter's event in its own event loop (never under the hub's lock)."""
    for loop, event in waiters:
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # its loop has closed: the subscriber is gone
            continue
