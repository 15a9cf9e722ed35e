"""The presenter view and the projector theme: one bar of controls at the top of every page, one style sheet.

The presenter view (toggle, or ``present=1`` in a link) hides the sidebar, the hyper-parameter form and the help
icons, and draws the page 25 % larger: text and pictures are zoomed as the browser's own zoom does (pictures stay
crisp: nearest-neighbour). Plotly charts are drawn at 1:1 inside the zoomed page (under CSS zoom Plotly clipped the
latent map's points and would misplace clicks); they gain the sidebar's width. The high-contrast theme (toggle) is a
light theme for projectors: black on white, no grey text, strong borders; Streamlit's own light and dark themes are
unchanged.

Always, in both views: long formulas in the "What you are seeing" boxes wrap at their top-level relations and
operators (KaTeX breaks there once its line may wrap) instead of running out of the page.
"""

from __future__ import annotations

import streamlit as st

PRESENT_KEY = "vaelab.present"
CONTRAST_KEY = "vaelab.contrast"
BAR_KEY = "vaelab-view-bar"  # the bar's container: its element carries the class st-key-vaelab-view-bar
FORM_CLASS = "st-key-vaelab-form-"  # config_form's container (hidden in the presenter view with its expander)
ZOOM = 1.25

# KaTeX's display math: Streamlit keeps each formula on one line (white-space: nowrap) in a box that scrolls, so a
# long one was cut at the right of its column ("(β = 1 : total =", "x = σ(g(z"). KaTeX splits a formula into
# unbreakable parts after each top-level relation and binary operator; letting the line wrap breaks it there.
BASE_CSS = """
[data-testid="stMainBlockContainer"] { padding-top: 4.25rem; }
.katex-display { overflow-x: visible !important; overflow-y: visible !important; padding: 0 0.3em; }
.katex-display > .katex { white-space: normal !important; max-width: 100%; }
.katex-display > .katex > .katex-html { white-space: normal !important; }
.katex-display > .katex > .katex-html > .base { margin: 0.2em 0; }
"""

PRESENTER_CSS = f"""
section[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
[data-testid="stExpandSidebarButton"], [data-testid="stSidebarCollapseButton"] {{ display: none !important; }}
[data-testid="stExpander"]:has([class*="{FORM_CLASS}"]) {{ display: none !important; }}
[data-testid="stTooltipIcon"]:has(button[aria-label^="Help for"]) {{ display: none !important; }}
[data-testid="stMainBlockContainer"] {{ zoom: {ZOOM}; max-width: none; padding: 3.4rem 1.5rem 4rem 1.5rem; }}
[data-testid="stPlotlyChart"], iframe[title$="vaelab_live_chart"] {{ zoom: {1 / ZOOM:.4f}; }}
[data-testid="stImage"] img {{ image-rendering: pixelated; }}
"""

CONTRAST_CSS = """
.stApp, [data-testid="stHeader"], section[data-testid="stSidebar"], section[data-testid="stSidebar"] > div,
[data-testid="stBottomBlockContainer"] {
  background: #ffffff !important; color: #000000 !important; }
.stApp p, .stApp li, .stApp label, .stApp span, .stApp h1, .stApp h2, .stApp h3, .stApp h4, .stApp h5,
.stApp summary, .stApp code, [data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] *,
[data-testid="stImageCaption"], [data-testid="stWidgetLabel"] * { color: #000000 !important; }
.stApp a, .stApp a * { color: #0033aa !important; }
[data-testid="stExpander"] details { border: 2px solid #000000 !important; }
.stApp input:not([role="combobox"]), .stApp textarea { border: 2px solid #000 !important; background: #fff !important; }
[data-testid="stSelectbox"] div:has(> input[role="combobox"]) { border: 2px solid #000000 !important; }
[data-testid="stCaptionContainer"], [data-testid="stImageCaption"] { opacity: 1 !important; }
.stApp input, .stApp textarea { color: #000 !important; -webkit-text-fill-color: #000 !important; }
.stApp button:not([data-testid="stBaseButton-primary"]), [data-testid="stExpander"] summary,
[data-testid="stSelectbox"] div:has(> input[role="combobox"]), [data-testid="stNumberInputContainer"] * {
  background-color: #ffffff !important; color: #000000 !important; }
[data-testid="stCode"] pre, .stApp code { background: #f2f2f2 !important; }
[data-testid="stAlert"] * { color: #000000 !important; }
"""


def presenter_on() -> bool:
    return bool(st.session_state.get(PRESENT_KEY, False))


def contrast_on() -> bool:
    return bool(st.session_state.get(CONTRAST_KEY, False))


def style_sheet(present: bool, contrast: bool) -> str:
    """The CSS for a view: the formula wrapping always, then the presenter view's and the theme's rules."""
    return BASE_CSS + (PRESENTER_CSS if present else "") + (CONTRAST_CSS if contrast else "")


def inject_styles() -> None:
    """The app's style sheet for this run's view (a <style> element takes no room on the page)."""
    st.html(f"<style>{style_sheet(presenter_on(), contrast_on())}</style>")


def view_toggles() -> None:
    """The presenter-view and high-contrast toggles (the caller places them)."""
    st.toggle("Presenter view", key=PRESENT_KEY, persist_state="session",
              help="For a projector: no sidebar or form, larger text, pictures and charts. A link with present=1 "
                   "opens it.")
    st.toggle("High contrast", key=CONTRAST_KEY, persist_state="session",
              help="A light high-contrast theme for projectors: black on white, strong borders.")
