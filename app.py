"""vaelab: `streamlit run app.py`. The router: page config, navigation over pages/, the shared sidebar; and the app
server's own route for the live stream (``app``, below).

``streamlit run`` finds ``app = st.App(...)`` in this file and serves it through Starlette with the route added; it
imports this file once for that, with no script context, and runs it as the page script (with one) for every
session's every rerun. Only the latter draws the page (``main``)."""

import os

# Before torch loads (both are read once, when its OpenMP runtime starts). The browser drawing the live charts
# needs a core: torch gets the others (at least one), and its threads sleep rather than spin while they wait, so
# they do not fight the browser and the server for the cores. Measured on 2 cores (benchmarks/bench_live_ui.py,
# benchmarks/README.md): 1 thread trained faster per step in the app than 2, and spinning threads were the slowest.
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Imported eagerly: two sessions drawing Plotly Express figures at once raced on Plotly's lazy import of pandas
# (DESIGN.md, "Seen on these machines").
import pandas  # noqa: F401
import plotly.express  # noqa: F401
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from vaelab.memory import map_large_blocks
from vaelab.ui import presenter
from vaelab.ui.charts import install_figure_helpers
from vaelab.ui.links import (
    apply_link,
    current_link,
    link_button,
    load_linked_checkpoint,
    show_link_errors,
    sync_address_bar,
)
from vaelab.ui.pages import PageSpec, draw_navigation, is_home, navigation_pages, spec_of
from vaelab.ui.restart import restart_notice
from vaelab.ui.run_token import keep_token_in_address_bar

map_large_blocks()  # what a run's redraws allocated goes back to the OS after Stop (vaelab/memory.py)


def render_sidebar() -> None:
    from vaelab.live_worker import warm_up_in_background
    from vaelab.ui.live_relay import start_relay
    from vaelab.ui.run_keeper import start_keeper
    from vaelab.ui.sidebar import render_sidebar  # imports torch and loads the dataset

    render_sidebar()
    warm_up_in_background()  # once: the training processes' forkserver, so the first Start need not wait
    start_keeper()  # once: runs nobody watches are brought in, paused after a grace period and autosaved
    start_relay()  # once: every training run's reports taken in, its frames relayed to its tab


def view_bar(bar, spec: PageSpec) -> None:
    """Top right of every page (in ``bar``): "Copy link" (variant pages), the presenter view and the high-contrast
    theme. Drawn once the settings and a linked checkpoint are in, so the link and the address bar hold them."""
    sync_address_bar(current_link(spec.variant))
    with bar:
        if spec.variant is not None:
            link_button(spec.variant, spec.url_path)
        presenter.view_toggles()


def main() -> None:
    st.set_page_config(page_title="vaelab: autoencoders and VAEs", page_icon=":material/science:", layout="wide")
    sections = navigation_pages()
    page = st.navigation(sections, position="hidden")  # the menu is ours: see draw_navigation
    spec = spec_of(page)
    apply_link(spec.variant)  # a session's first run: a link's settings go in before anything is drawn
    presenter.inject_styles()
    draw_navigation(sections)
    install_figure_helpers()  # charts' SVG button beside the PNG camera; pictures never wider than their column
    restart_notice()
    keep_token_in_address_bar()  # this tab's runs: a reload, a second tab or a reconnect finds them again
    bar = st.container(horizontal=True, horizontal_alignment="right", vertical_alignment="center",
                       key=presenter.BAR_KEY)
    link_errors = st.container()  # filled once a linked checkpoint has been tried
    if is_home(page):  # Home reads no settings: it is drawn (and its links work) before torch and the data load
        view_bar(bar, spec)
        with link_errors:
            show_link_errors()
        page.run()
        render_sidebar()
    else:  # a variant page reads the sidebar's settings of this run
        render_sidebar()
        if spec.variant is not None:
            from vaelab.ui.checkpoint_panel import restore_archived_run

            restore_archived_run(spec.variant)  # a run archived while no tab showed it comes back from its autosave
            load_linked_checkpoint(spec.variant)
        view_bar(bar, spec)
        with link_errors:
            show_link_errors()
        page.run()


if get_script_run_ctx() is None:  # imported by `streamlit run` to find the app: the server's routes, no page
    from starlette.routing import WebSocketRoute

    from vaelab.frame_stream import HUB, LIVE_PATH

    app = st.App(__file__, routes=[WebSocketRoute(LIVE_PATH, HUB.endpoint)])
else:
    main()
