"""Compare page (layout only): a table of every saved model, then two to four of them side by side."""

from pathlib import Path

import streamlit as st

from vaelab import compare, evaluate, plots
from vaelab.checkpoints import Checkpoint, CheckpointError, load_checkpoint
from vaelab.config import ConfigError
from vaelab.data import DataError
from vaelab.ui.charts import show_chart
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.images import show_image_rows
from vaelab.ui.pages import require_app_frame
from vaelab.ui.sidebar import cached_data

require_app_frame()  # a deep link as a fresh server's first request: run inside app.py

N_IMAGES = 10
BAR_HEIGHT = 300
FEEDBACK_KEY = "compare.feedback"


@st.cache_resource(max_entries=16, show_spinner=False)
def _load(path: str, stamp: tuple[int, int]) -> Checkpoint:
    """One load per file version (``stamp`` = mtime, size): caching metrics rewrites the file."""
    return load_checkpoint(path)


def load(path: str) -> Checkpoint:
    stat = Path(path).stat()
    return _load(path, (stat.st_mtime_ns, stat.st_size))


def data_for(entry: compare.Entry):
    """The checkpoint's own dataset (mnist-5k stands in for a download that cannot be made)."""
    return cached_data(*compare.data_spec(entry.meta)).data


def labelled_rows(rows: list[tuple[str, str, object]], image_shape: tuple[int, int]) -> None:
    """One row of images per line, its label beside it: whose images (bold) and what they are."""
    for who, what, images in rows:
        label, pictures = st.columns([1, 5], vertical_alignment="center")
        label.markdown(f"**{who}**")
        label.caption(what)
        with pictures:
            show_image_rows([images], image_shape, name=f"{who} {what}")


def compute_metrics(entries: list[compare.Entry], k: int, n: int) -> None:
    bar = st.progress(0.0, text="Computing metrics…")
    done, failed = [], []
    for i, entry in enumerate(entries):
        def report(step: int, total: int, i=i, entry=entry) -> None:
            bar.progress(min(1.0, (i + step / total) / len(entries)), text=f"{entry.label}: {step / total:.0%}")
        try:
            evaluate.evaluate_checkpoint(entry.path, data_for(entry), k=k, n=n, on_progress=report)
        except (CheckpointError, ConfigError, DataError, ValueError, RuntimeError) as error:
            failed.append(f"{entry.label}: {error}")
        else:
            done.append(entry.label)
    st.session_state[FEEDBACK_KEY] = (done, failed)


st.title("Compare models")
what_you_are_seeing(
    "Every saved checkpoint in one table (click a column to sort; download it as CSV). Pick two to four to see "
    "them side by side: reconstructions of the same test images, samples of the generative ones, their loss "
    "curves overlaid and bar charts of their metrics. **Compute metrics** evaluates what applies and stores "
    "the results inside each checkpoint, so each is computed once:\n\n"
    "- **log p(x)** (VAEs): the importance-weighted bound with $K$ samples $z_k \\sim q(z|x)$, which rises "
    "to $\\log p(x)$ as $K$ grows ($K = 1$ is the ELBO); exact for a binary latent of at most 16 bits, by "
    "summing over all $2^d$ codes. With a Gaussian decoder it is a density of continuous pixels: not "
    "comparable with Bernoulli nats.\n"
    "- **Reconstruction**: BCE summed over pixels and MSE per pixel of $\\hat x$ against $x$.\n"
    "- **Probes**: a logistic regression and a $k$-NN classifier trained on the standardised codes of training "
    "images, scored on test codes: how much of the digit's identity the code keeps in an easy-to-read form.\n"
    "- **Active units** (VAEs): units $j$ with $\\mathrm{Var}_x\\,\\mathbb{E}_q[z_j] > 0.01$.",
    [r"\log p(x) \;\ge\; \mathcal{L}_K(x) = \mathbb{E}\Big[\log \frac{1}{K}\sum_{k=1}^{K}"
     r"\frac{p(x \mid z_k)\,p(z_k)}{q(z_k \mid x)}\Big],\qquad z_k \sim q(z \mid x)",
     r"\mathcal{L}_1(x) = \mathbb{E}_q[\log p(x \mid z)] - \mathrm{KL}\big(q(z \mid x)\,\|\,p(z)\big)"
     r"\;\le\; \mathcal{L}_K(x) \;\le\; \mathcal{L}_{K+1}(x)"],
)

entries = compare.checkpoint_entries()
if not entries:
    st.info("No saved models yet. Train one on a variant page and save it, or prepare the whole lab with "
            "`python -m vaelab pretrain --dataset mnist-5k`.")
    st.stop()

table = compare.comparison_table(entries)
st.subheader("Saved models")
extra = st.multiselect("More columns", compare.optional_columns(table), key="compare.columns",
                       help="The table shows the main columns; the CSV holds them all.")
shown = compare.shown_columns(table, extra)
same = compare.same_in_every_row(table, shown)
if same:
    st.caption("Every model: " + " · ".join(f"{name} **{value}**" for name, value in same.items()))
formats = compare.number_formats(table)
column_config = {name: st.column_config.NumberColumn(format=formats[name], width=compare.column_width(name))
                 if name in formats else st.column_config.TextColumn(width=compare.column_width(name))
                 for name in shown}
column_config["model"] = st.column_config.TextColumn("model", width=compare.column_width("model"),
                                                     help="variant / checkpoint name")
st.dataframe(table, hide_index=True, key="compare.table", column_order=[c for c in shown if c not in same],
             column_config=column_config)
st.download_button("Download CSV", table.to_csv(index=False).encode(), file_name="vaelab-models.csv",
                   mime="text/csv", icon=":material/download:", key="compare.csv", on_click="ignore")
for entry in entries:
    if not entry.readable:
        st.warning(f"`{entry.path}` is unreadable: {entry.error}", icon=":material/broken_image:")

readable = {str(e.path): e for e in entries if e.readable}
if not readable:
    st.stop()
chosen = st.multiselect("Models to compare (two to four; the two saved last first)", list(readable),
                        default=[str(e.path) for e in compare.most_recent(entries, 2)],
                        format_func=lambda p: readable[p].label, max_selections=4, key="compare.selection")
selected = [readable[p] for p in chosen]

with st.expander("Compute metrics", expanded=False, icon=":material/calculate:"):
    left, middle, right = st.columns(3)
    k = left.number_input("Importance samples K", 1, evaluate.MAX_K, evaluate.DEFAULT_K, key="compare.k",
                          help="Samples from q(z|x) per image for log p(x); more is tighter and slower.")
    n = middle.number_input("Test images n", 1, evaluate.MAX_N, evaluate.DEFAULT_N, key="compare.n",
                            help="Evenly spaced test images (all of them when the set is smaller).")
    scope = right.radio("For", ["the selected models", "every model in the table"], key="compare.scope")
    targets = selected if scope == "the selected models" else list(readable.values())
    if st.button("Compute metrics", key="compare.compute", icon=":material/play_arrow:", disabled=not targets):
        compute_metrics(targets, int(k), int(n))
        st.rerun()
    feedback = st.session_state.get(FEEDBACK_KEY)
    if feedback:
        done, failed = feedback
        if done:
            st.success(f"Computed and stored for: {', '.join(done)}.")
        for line in failed:
            st.error(line)

if len(selected) < 2:
    st.info("Pick at least two models to compare them side by side.")
    st.stop()

loaded: dict[str, Checkpoint] = {}
for entry in selected:
    try:
        loaded[entry.label] = load(str(entry.path))
    except (CheckpointError, OSError) as error:
        st.error(f"{entry.label} cannot be loaded: {error}")

# -- reconstructions and samples ---------------------------------------------------------------------------------
first = selected[0]
try:
    data = data_for(first)
except DataError as error:
    st.error(f"The test images of {first.label} cannot be loaded: {error}")
    data = None
if data is not None:
    st.subheader("Reconstructions of the same test images")
    x, y = compare.test_images(data.test.images, data.test.labels, N_IMAGES)
    rows, skipped = [("Originals", f"test images from {data.test.source}", x)], []
    for label, ckpt in loaded.items():
        if ckpt.meta.get("input_dim") != data.input_dim:
            skipped.append(label)
            continue
        rows.append((label, "reconstructions of the originals", compare.reconstructions(ckpt.model, x, y)))
    labelled_rows(rows, data.image_shape)
    if skipped:
        st.caption(f"Not shown (trained on images of another size): {', '.join(skipped)}.")

    generative = {label: ckpt for label, ckpt in loaded.items() if ckpt.model.generative
                  and ckpt.meta.get("input_dim") == data.input_dim}
    if generative:
        st.subheader("Samples")
        rows = []
        for label, ckpt in generative.items():
            samples = compare.generated_samples(ckpt.model, N_IMAGES)
            if samples is not None:
                rows.append((label, "samples: decoded draws from its prior (the same seed for all)", samples))
        if rows:
            labelled_rows(rows, data.image_shape)
        else:
            st.caption("None of the selected generative models can sample yet.")

# -- curves and metrics ------------------------------------------------------------------------------------------
st.subheader("Loss curves")
histories = {e.label: e.meta.get("history") or [] for e in selected}
terms = compare.common_terms(list(histories.values()))
if terms:
    term = st.selectbox("Term", terms, key="compare.term", help="Terms every selected model reports.")
    show_chart(plots.compare_loss_curves(histories, term), key="compare.curves", name=f"Compare loss curves {term}")
else:
    st.caption("The selected models share no loss term.")

st.subheader("Metrics")
bars = compare.metric_bars(table, [str(e.path) for e in selected])
columns = st.columns(2)
for i, (title, names, values) in enumerate(bars):
    with columns[i % 2]:
        fig = plots.bar_chart(names, values, title=title).update_layout(height=BAR_HEIGHT)
        show_chart(fig.update_traces(texttemplate="%{y:.4~g}", textposition="auto"), key=f"compare.bar.{i}",
                   name=f"Compare {title}")
if not any(title.startswith("log p(x)") or "probe" in title for title, _, _ in bars):
    st.caption("Log-likelihood and probe accuracy appear here once computed (**Compute metrics** above).")
