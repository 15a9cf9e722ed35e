"""A tab's private run token: read from the session or the address bar, and written back to the address bar (see
:mod:`vaelab.ui.run_store`). Light: no torch."""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from vaelab.ui.run_store import RUN_PARAM, RUNS

TOKEN_KEY = "vaelab.run_token"


def run_token() -> str:
    """This tab's private token: the session's own, else the address bar's when the server knows it (a reload, a
    second tab, a reconnect), else a new one. Marks the tab (its Streamlit session) as seen with it."""
    token = st.session_state.get(TOKEN_KEY)
    if not RUNS.known(token):
        asked = st.query_params.get(RUN_PARAM)
        token = asked if RUNS.known(asked) else RUNS.new_token()
        st.session_state[TOKEN_KEY] = token
    context = get_script_run_ctx()
    RUNS.touch(token, context.session_id if context is not None else None)
    return token


def keep_token_in_address_bar() -> None:
    """Call once per script run, before the page: the address bar holds the token, so a reload brings it back (a
    shared link never does: vaelab.ui.links)."""
    token = run_token()
    if st.query_params.get(RUN_PARAM) != token:
        st.query_params[RUN_PARAM] = token
