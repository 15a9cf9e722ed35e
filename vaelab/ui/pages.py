"""The app's page table: file, title, icon and URL of every page, grouped as the navigation shows them.

Only pages whose file exists are registered, so the app runs while pages are still being written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from vaelab.variants import VARIANTS

APP_ROOT = Path(__file__).resolve().parents[2]  # the folder holding app.py and pages/


@dataclass(frozen=True)
class PageSpec:
    group: str  # navigation section ("" for the top)
    file: str  # relative to the app root
    title: str
    icon: str
    url_path: str
    variant: str | None = None  # the registry key the page trains

    def exists(self, root: Path = APP_ROOT) -> bool:
        return (root / self.file).is_file()


def _variant_page(group: str, key: str, icon: str) -> PageSpec:
    module = VARIANTS[key].module
    return PageSpec(group, f"pages/{module}.py", VARIANTS[key].title, icon, key, key)


PAGES: tuple[PageSpec, ...] = (
    PageSpec("", "pages/home.py", "Home", ":material/home:", "home"),
    _variant_page("Deterministic", "ae", ":material/compress:"),
    _variant_page("Deterministic", "denoising", ":material/blur_off:"),
    _variant_page("Deterministic", "sparse", ":material/grain:"),
    _variant_page("Deterministic", "ksparse", ":material/filter_list:"),
    _variant_page("Deterministic", "contractive", ":material/unfold_less:"),
    _variant_page("Generative", "vae", ":material/auto_awesome:"),
    _variant_page("Generative", "cvae", ":material/label:"),
    _variant_page("Generative", "binary-vae", ":material/toggle_on:"),
    _variant_page("Generative", "ae-gmm", ":material/bubble_chart:"),
    PageSpec("Compare", "pages/compare.py", "Compare models", ":material/compare:", "compare"),
)


def existing_pages(root: Path = APP_ROOT) -> list[PageSpec]:
    return [p for p in PAGES if p.exists(root)]


def page_for_variant(key: str) -> PageSpec | None:
    return next((p for p in PAGES if p.variant == key), None)


HOME_FILE = "pages/home.py"


def spec_of(page: st.Page) -> PageSpec:
    """The table's entry of the page st.navigation picked (matched by its URL path; Home's is "")."""
    path = page.url_path or next(spec.url_path for spec in PAGES if spec.file == HOME_FILE)
    return next((spec for spec in PAGES if spec.url_path == path), PAGES[0])


def is_home(page: st.Page) -> bool:
    """Whether the page st.navigation picked is Home (the one page that reads no sidebar settings)."""
    return page.title == next(spec.title for spec in PAGES if spec.file == HOME_FILE)


def require_app_frame() -> None:
    """Call first in every page: a page started without app.py (Streamlit's legacy pages/ mode, which a fresh
    server uses until some session has called st.navigation) switches the app to app.py's navigation for every
    session, as st.navigation itself does, and reruns through app.py, so the deep link lands in the full frame
    (sidebar, links, settings) instead of a bare page under the raw pages/ list."""
    from streamlit.runtime.pages_manager import PagesManager  # no public switch: st.navigation sets this flag

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


NAV_KEY = "vaelab-nav"  # the sidebar container of the links: its element carries the class st-key-vaelab-nav


def draw_navigation(sections: dict[str, list[st.Page]]) -> None:
    """The app's own links in the sidebar, drawn by every run of app.py (st.navigation's menu is hidden).

    Streamlit's built-in menu lists the legacy ``pages/`` folder until a session has called st.navigation, so a
    tab reconnecting to a restarted server, or a deep link as a fresh server's first request, showed that raw
    list (and ``client.showSidebarNavigation = false`` hides both menus). These links come with the app itself."""
    with st.sidebar.container(key=NAV_KEY):
        for section, pages in sections.items():
            if section:
                st.caption(section)
            for page in pages:
                st.page_link(page)


def navigation_pages(root: Path = APP_ROOT) -> dict[str, list[st.Page]]:
    """{section: [st.Page]} for st.navigation; Home is the default page."""
    sections: dict[str, list[st.Page]] = {}
    for spec in existing_pages(root):
        page = st.Page(root / spec.file, title=spec.title, icon=spec.icon, url_path=spec.url_path,
                       default=spec.file == HOME_FILE)
        sections.setdefault(spec.group, []).append(page)
    return sections
