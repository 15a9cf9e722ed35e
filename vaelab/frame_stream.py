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

    def channel_of(self, token: str | None) -> str | None:
        with self._lock:
            return self._tokens.get(token or "")

    def newer_than(self, channel: str, seen: dict[str, int]) -> list[Frame] | None:
        """The newest frame of each view whose version is past ``seen[view]`` (updated); None once closed."""
        with self._lock:
            found = self._channels.get(channel)
            if found is None:
                return None
            fresh = [(view, version, frame) for view, (version, frame) in found.newest.items()
                     if version > seen.get(view, 0)]
        for view, version, _ in fresh:
            seen[view] = version
        return [frame for _, _, frame in sorted(fresh, key=lambda item: item[1])]

    async def endpoint(self, websocket) -> None:
        """The WebSocket route: ``?token=`` names the subscription; each new frame is sent once, newest only."""
        channel = self.channel_of(websocket.query_params.get("token"))
        await websocket.accept()
        if channel is None:
            await websocket.close(code=UNKNOWN_TOKEN_CLOSE)
            return
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        seen: dict[str, int] = {}
        self._watch(channel, waiter, add=True)
        try:
            while True:
                waiter[1].clear()
                frames = self.newer_than(channel, seen)
                if frames is None:
                    await websocket.close()
                    return
                for frame in frames:
                    await websocket.send_bytes(encode_frame(frame))
                if not frames:
                    await waiter[1].wait()
        except (WebSocketDisconnect, RuntimeError, OSError):  # the tab went away mid-send: nothing to keep
            return
        finally:
            self._watch(channel, waiter, add=False)

    def _watch(self, channel: str, waiter, add: bool) -> None:
        with self._lock:
            found = self._channels.get(channel)
            if found is not None:
                (found.waiters.add if add else found.waiters.discard)(waiter)


def _wake(waiters) -> None:
    """Set each waiter's event in its own event loop (never under the hub's lock)."""
    for loop, event in waiters:
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # its loop has closed: the subscriber is gone
            continue
