"""k-sparse autoencoder page (layout only): the filter grid; for one test image and a k slider, the units that fire,
their filters, and the reconstruction at several k; all redrawn live."""

import numpy as np
import streamlit as st
import torch

from vaelab import plots
from vaelab.analysis import image_grids, sparsity
from vaelab.ui.charts import show_chart
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.images import show_image_rows, show_picture
from vaelab.ui.pages import require_app_frame
from vaelab.ui.session import TrainingSession
from vaelab.ui.training_panel import training_panel

require_app_frame()  # a deep link as a fresh server's first request: run inside app.py

VARIANT = "ksparse"
SHOWN_KS = (5, 10, 20, 44)  # reconstructions at these k (those up to the code size), plus k = code size
IMAGE_KEY = "ksparse.image"


def chosen_image(session: TrainingSession) -> tuple[int, torch.Tensor]:
    """The test image picked with the page's number input: (index, (D,) pixels)."""
    test = session.data.test
    if st.session_state.get(IMAGE_KEY, 0) >= len(test):  # a smaller test set than before
        st.session_state[IMAGE_KEY] = 0
    index = int(st.number_input(f"Test image (0 to {len(test) - 1})", 0, len(test) - 1, step=1, key=IMAGE_KEY,
                                persist_state="session"))
    st.caption(f"Its label: {int(test.labels[index])}")
    return index, test.images[index]


def fired_units(session: TrainingSession, image: torch.Tensor, k: int, index: int) -> None:
    units, values = sparsity.top_k_units(session.model, image, k)  # (k,), (k,) largest first
    fig = plots.bar_chart([f"#{u}" for u in units], values.tolist(),
                          title=f"The {k} units that fire for test image {index}, step {session.step:,}",
                          y_title="activation")
    fig.update_traces(marker_color=plots.TERM_COLORS[0])
    fig.update_xaxes(type="category", title="code unit (strongest first)")  # "#51" is a name, not a number
    show_chart(fig, key="ksparse.fired", name="k-sparse units that fire", live=session.running)
    if session.config.hidden_sizes:
        st.caption("Filters of code units are drawn for one-layer encoders only (this one has hidden layers).")
        return
    weights = image_grids.first_layer_weights(session.model)[units]  # (k, D), in firing order
    show_picture(image_grids.filter_grid(weights, session.data.image_shape), scale=2,
                 caption=f"Their filters, strongest first (units {', '.join(str(u) for u in units[:12])}"
                         f"{', …' if k > 12 else ''}) · step {session.step:,}",
                 name="k-sparse filters of the units that fire")


def reconstructions(session: TrainingSession, image: torch.Tensor, k: int) -> None:
    code_size = session.config.code_size
    ks = sorted({*(s for s in SHOWN_KS if s <= code_size), k, code_size})
    recon = sparsity.reconstructions_at_k(session.model, image, ks)  # (len(ks), D)
    show_image_rows([np.concatenate([image.numpy()[None], recon])], session.data.image_shape,
                    caption="The image, then decoded from its k largest units for k = "
                            + ", ".join(str(s) for s in ks)
                            + f" (trained with k = {session.config.k}) · step {session.step:,}",
                    name="k-sparse reconstructions at k")


def ksparse_views(session: TrainingSession) -> None:
    """Live: all filters | the chosen image's units, their filters and reconstructions at several k."""
    config = session.config
    grid, inspect = st.columns([2, 3])
    with grid:
        what = "code unit" if not config.hidden_sizes else "first hidden unit"
        weights = image_grids.first_layer_weights(session.model)
        show_picture(image_grids.filter_grid(weights, session.data.image_shape), scale=2,
                     caption=f"Each {what}'s encoder weights as an image ({len(weights)} units, each tile scaled "
                             f"to its own min..max) · k = {session.model.current_k} now · step {session.step:,}",
                     name="k-sparse filters")
    with inspect:
        pick, slider = st.columns(2)
        with pick:
            index, image = chosen_image(session)
        with slider:
            k = 1 if config.code_size == 1 else st.slider(
                "k (units kept)", 1, config.code_size, config.k, key=f"ksparse.k.{session.version}",
                help=f"Keep the k largest code units of this image; the model trains with k = {config.k}.")
        fired_units(session, image, k, index)
        reconstructions(session, image, k)


st.title("k-sparse autoencoder")
what_you_are_seeing(
    "A linear encoder $h = W(x - \\bar x) + b$ (`code_size` = 144 units by default) whose code keeps only the $k$ "
    "largest units of each image (`k`) and sets the rest to 0; the decoder reconstructs from those $k$. No penalty "
    "term: sparsity is built into the code, and gradients reach only the kept units. The input is centred on the "
    "training set's mean image $\\bar x$ (`center_input`; off: $\\bar x = 0$): otherwise the units that happen to "
    "align with the average digit win every top-$k$ from the first steps and the rest never train (dead units). "
    "With `anneal_epochs` = $A > 0$, the $k$ in use starts at $H$ = `code_size` and falls linearly to `k` over the "
    "first $A$ epochs (Makhzani & Frey), so that every unit gets gradient early. Below the curves: every unit's "
    "filter (its row of $W$ as an image), and for one test image the $k$ units that fire, their filters, and the "
    "image rebuilt from its $k$ largest units for several $k$.",
    [r"z = \mathrm{top}_k(h) = h \odot m, \quad m_j = 1 \text{ if } h_j \text{ is among the } k "
     r"\text{ largest of } h, \text{ else } 0, \qquad h = W(x - \bar x) + b",
     r"k_{\text{now}} = \operatorname{round}\Big(H - (H - k)\,\min\big(1, \tfrac{e}{A}\big)\Big)"
     r"\quad (e = \text{epochs trained so far; } k \text{ itself when } A = 0)",
     r"\hat x = \sigma(g(z)), \qquad \texttt{bce}:\ \mathcal{L}(x) = -\sum_{i=1}^{D} \big[x_i \log \hat x_i"
     r" + (1-x_i)\log(1-\hat x_i)\big]"],
)
training_panel(VARIANT, extra_views=ksparse_views)
