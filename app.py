"""vaelab: `streamlit run app.py`. The router: page config, navigation over pages/, the shared sidebar."""

import os

# Before torch loads (both are read once, when its OpenMP runtime starts). The browser drawing the live charts
# needs a core: torch gets the others (at least one), and its threads sleep rather than spin while they wait, so
# they do not fight the browser and the server for the cores. Measured on 2 cores (benchmarks/bench_live_ui.py,
# README "Benchmarks"): 1 thread trained faster per step in the app than 2, and spinning threads were the slowest.
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Imported eagerly: two sessions drawing Plotly Express figures at once raced on Plotly's lazy import of pandas
# (DESIGN.md, "Seen on these machines").
import pandas  # noqa: F401
import plotly.express  # noqa: F401
import streamlit as st

from vaelab.ui.pages import draw_navigation, is_home, navigation_pages
from vaelab.ui.restart import restart_notice


def render_sidebar() -> None:
    from vaelab.ui.sidebar import render_sidebar  # imports torch and loads the dataset

    render_sidebar()


st.set_page_config(page_title="vaelab: autoencoders and VAEs", page_icon=":material/science:", layout="wide")
sections = navigation_pages()
page = st.navigation(sections, position="hidden")  # the menu is ours: see draw_navigation
draw_navigation(sections)
restart_notice()
if is_home(page):  # Home reads no settings: it is drawn (and its links work) before torch and the data load
    page.run()
    render_sidebar()
else:  # a variant page reads the sidebar's settings of this run
    render_sidebar()
    page.run()
