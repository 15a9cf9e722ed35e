"""Home: Prepare the class (every page's lesson model, trained in the background), then what each variant teaches,
two lines each, with a link to its page, and the class as saved."""

import streamlit as st

from vaelab.ui.classroom_panel import prepare_class_section, saved_class_section
from vaelab.ui.pages import PAGES, require_app_frame
from vaelab.variants import VARIANTS

require_app_frame()  # a deep link as a fresh server's first request: run inside app.py

st.title("vaelab: autoencoders and variational autoencoders")
st.markdown(
    "Train each model live on handwritten digits, watch its loss split into terms, and look at what it "
    "learned. Pick the dataset, device and seed in the sidebar; every page can save and reload its models."
)
prepare_class_section()

for group in ("Deterministic", "Generative", "Compare"):
    specs = [p for p in PAGES if p.group == group]
    st.subheader(group)
    for spec in specs:
        lesson = VARIANTS[spec.variant].lesson if spec.variant else "Several saved models side by side."
        if spec.exists():
            st.page_link(spec.file, label=spec.title, icon=spec.icon)
        else:
            st.markdown(f"{spec.title} *(page not written yet)*")
        st.caption(lesson)

saved_class_section()
