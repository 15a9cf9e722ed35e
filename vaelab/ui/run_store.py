"""The server's runs, kept by a private token so that a reload, a second tab or a reconnect finds them again.

A browser's tab holds its token in the address bar (``?run=...``, never in a shared link) and in its Streamlit
session. Each token owns one run per variant (the pages' :class:`~vaelab.ui.session.TrainingSession`), the
Streamlit sessions that brought it (a tab whose connection is open watches its runs: :mod:`vaelab.ui.run_keeper`
asks the server) and the time a tab holding it was last seen (:mod:`vaelab.ui.run_token`).
A new Streamlit session (a reload, a second tab with the same address, a reconnect after sleep) that brings a known
token takes over its runs as they are; an unknown one (made up, or from before a restart) gets a new token.

No Streamlit and no torch here: a plain store, safe to use from any thread.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vaelab.config import ConfigError

RUN_PARAM = "run"  # the address bar's name for the token
TOKEN_BYTES = 16  # 128 random bits: a token cannot be guessed, only copied
GRACE_ENV = "VAELAB_UNWATCHED_GRACE_S"
GRACE_S = 60.0  # unwatched this long, a run is paused and autosaved (a reload comes back well within it)


def grace_s() -> float:
    """How long a run may train with no tab open on it: ``$VAELAB_UNWATCHED_GRACE_S`` (seconds, 5 to 86,400),
    default ``GRACE_S``."""
    value = os.environ.get(GRACE_ENV, "").strip()
    if not value:
        return GRACE_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 5 <= seconds <= 86_400:
        raise ConfigError(GRACE_ENV, f"must be a number of seconds from 5 to 86400 (got {value!r})")
    return seconds


@dataclass
class Owner:
    """A token's runs (variant -> run) and when a tab holding the token was last seen (``time.monotonic``)."""

    token: str
    runs: dict[str, Any] = field(default_factory=dict)
    seen: float = field(default_factory=time.monotonic)
    sessions: set[str] = field(default_factory=set)  # the Streamlit sessions (tabs) that brought the token


class RunStore:
    """Tokens and their runs, for the server's lifetime (or until :meth:`forget`)."""

    def __init__(self) -> None:
        # Lock rules: ``_lock`` guards ``_owners`` and each owner's ``runs`` and ``seen``; held only to read, add or
        # replace entries, never while making a run, asking a run anything or taking another lock.
        self._lock = threading.Lock()
        self._owners: dict[str, Owner] = {}

    def new_token(self) -> str:
        """A fresh token with no runs yet, seen now."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        owner = Owner(token)
        with self._lock:
            self._owners[token] = owner
        return token

    def known(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and token in self._owners

    def touch(self, token: str, session: str | None = None, now: float | None = None) -> None:
        """A tab holding ``token`` (Streamlit's session id ``session``, if known) is open ``now`` (default: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            owner = self._owners.get(token)
            if owner is not None:
                owner.seen = now
                if session is not None:
                    owner.sessions.add(session)

    def drop_sessions(self, token: str, gone: set[str]) -> None:
        """Those sessions of ``token`` are closed for good (the keeper found them gone)."""
        with self._lock:
            owner = self._owners.get(token)
            if owner is not None:
                owner.sessions -= gone

    def run(self, token: str, variant: str, new: Callable[[], Any]) -> Any:
        """The token's run of ``variant``, made by ``new()`` (outside the lock) the first time."""
        with self._lock:
            found = self._owners[token].runs.get(variant)
        if found is not None:
            return found
        made = new()
        with self._lock:  # a second tab may have made it meanwhile: the first one made stays
            return self._owners[token].runs.setdefault(variant, made)

    def owners(self) -> list[tuple[str, float, list[Any], set[str]]]:
        """(token, last seen, its runs, its sessions) of every token, copied: the caller works on them without the
        lock."""
        with self._lock:
            return [(o.token, o.seen, list(o.runs.values()), set(o.sessions)) for o in self._owners.values()]

    def forget(self, token: str) -> None:
        """Drop a token and its runs (their memory goes with the last reference)."""
        with self._lock:
            self._owners.pop(token, None)


RUNS = RunStore()  # the server process's one store
