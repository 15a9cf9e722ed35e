"""A tab's private run token: read from the session or the address bar, written back to the address bar, and a
heartbeat that tells the server the tab is still open (see :mod:`vaelab.ui.run_store`). Light: no torch."""

from __future__ import annotations

import streamlit as st

from vaelab.ui.run_store import RUN_PARAM, RUNS, heartbeat_s

TOKEN_KEY = "vaelab.run_token"


def run_token() -> str:
    """This tab's private token: the session's own, else the address bar's when the server knows it (a reload, a
    second tab, a reconnect), else a new one. Marks the tab as seen (the keeper pauses runs nobody watches)."""
    token = st.session_state.get(TOKEN_KEY)
    if not RUNS.known(token):
        asked = st.query_params.get(RUN_PARAM)
        token = asked if RUNS.known(asked) else RUNS.new_token()
        st.session_state[TOKEN_KEY] = token
    RUNS.touch(token)
    return token


def keep_token_in_address_bar() -> None:
    """Call once per script run, before the page: the address bar holds the token, so a reload brings it back (a
    shared link never does: vaelab.ui.links), and the tab says it is open every ``heartbeat_s()`` (a fragment of a
    few microseconds that draws nothing), so a run training on one page stays watched while the student reads
    another."""
    token = run_token()
    if st.query_params.get(RUN_PARAM) != token:
        st.query_params[RUN_PARAM] = token

    @st.fragment(run_every=heartbeat_s())
    def _heartbeat() -> None:
        RUNS.touch(token)

    _heartbeat()
