"""A notice in a tab that outlived its server: training runs live in the server process, so a restart loses them.

Each run writes the server's boot id into the URL (``?server=...``). A tab that reconnects to a restarted server
starts a new session whose URL still holds the old id: that session says so once, instead of showing a page that
looks as if nothing had happened (or stays greyed on its last progress line).
"""

from __future__ import annotations

import secrets

import streamlit as st

BOOT_ID = secrets.token_hex(4)  # one per server process (this module is imported once per process)
PARAM = "server"
SEEN_KEY = "vaelab.server_boot"
RESTARTED_KEY = "vaelab.server_restarted"


def restart_notice() -> None:
    """Call once per run, before the page: remember this server in the URL and warn after a restart."""
    if SEEN_KEY not in st.session_state:  # this session's first run
        st.session_state[SEEN_KEY] = BOOT_ID
        earlier = st.query_params.get(PARAM)
        st.session_state[RESTARTED_KEY] = earlier is not None and earlier != BOOT_ID
    if st.query_params.get(PARAM) != BOOT_ID:
        st.query_params[PARAM] = BOOT_ID
    if st.session_state.get(RESTARTED_KEY):
        st.warning("**The server restarted** since this tab last talked to it: runs that were training or paused "
                   "here are gone (they live in the server while they run). Saved checkpoints are kept, and so are "
                   "the autosaves of runs no tab had shown for a while: **Load** one, or **Start** again.",
                   icon=":material/restart_alt:")
        if st.button("Dismiss", key="vaelab.dismiss_restart"):
            st.session_state[RESTARTED_KEY] = False
            st.rerun()
