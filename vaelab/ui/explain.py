"""The "What you are seeing" expander every page ends its header with."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st


def what_you_are_seeing(markdown: str, latex: Sequence[str] = (), *, expanded: bool = False) -> None:
    """An expander with a short explanation and the objective(s) in LaTeX, in the code's own symbols.

    ``markdown`` is shown first, then each entry of ``latex`` as its own ``st.latex`` block."""
    with st.expander("What you are seeing", expanded=expanded, icon=":material/school:"):
        st.markdown(markdown)
        for formula in latex:
            st.latex(formula)
