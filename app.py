"""vaelab: `streamlit run app.py`. The router: page config, navigation over pages/, the shared sidebar."""

# Imported eagerly: two sessions drawing Plotly Express figures at once raced on Plotly's lazy import of pandas
# (DESIGN.md, "Seen on these machines").
import pandas  # noqa: F401
import plotly.express  # noqa: F401
import streamlit as st

from vaelab.ui.pages import navigation_pages
from vaelab.ui.sidebar import render_sidebar

st.set_page_config(page_title="vaelab: autoencoders and VAEs", page_icon=":material/science:", layout="wide")
page = st.navigation(navigation_pages())
render_sidebar()
page.run()
