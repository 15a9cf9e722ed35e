"""The only Streamlit code outside ``app.py`` and ``pages/``: sidebar, config form, training panel, helpers.

A page is layout only. The pattern (see ``pages/ae.py``)::

    import streamlit as st
    from vaelab import plots
    from vaelab.analysis import image_grids, robustness
    from vaelab.ui.charts import show_chart
    from vaelab.ui.explain import what_you_are_seeing
    from vaelab.ui.images import show_image_rows, show_picture
    from vaelab.ui.session import TrainingSession, model_cached
    from vaelab.ui.training_panel import training_panel

    def live_views(session: TrainingSession) -> None:        # redrawn inside the live fragment while training
        show_picture(image_grids.filter_grid(image_grids.first_layer_weights(session.model), session.data.image_shape))
        show_chart(fig, key="sparse.hist", name="Sparse mean activations")   # a stable key: updated in place

    st.title("Sparse autoencoder")
    what_you_are_seeing("...", [r"\\mathcal{L} = ..."])
    session = training_panel("sparse", extra_views=live_views, fixed={"rho": rho_from_my_slider})
    if session.has_model:                                     # views that need not be live (t-SNE, sweeps)
        result = model_cached(session, "sweep", lambda: robustness.corruption_sweep(...), level)

Modules:
    sidebar         ``current_settings()`` -> Settings(data, dataset, device, seed, notice); cached dataset loading
    config_form     ``config_form(variant, ...)``: widgets generated from the config dataclass; presets
    training_panel  ``training_panel(variant, extra_views=..., defaults=..., fixed=...)`` -> TrainingSession
    session         TrainingSession (model, history, config, data, step, status), ``model_cached``, ``run_model``
    controls / live_view / checkpoint_panel   the panel's parts (buttons, live fragment, save / load)
    images          ``show_image_rows`` (rows of digits), ``show_picture`` (filter grids, manifolds): inline PNGs, each
                    with a PNG download (caption in its metadata)
    charts          ``show_chart(fig, key=<stable key>, name=<file name>)``: every Plotly chart; toolbar clear of
                    titles and legends, PNG and SVG export
    latent_views    cached test codes, clickable latent map + picked image, ELBO split table, t-SNE on request
    layout          ``side_by_side(session, *views)``, ``train_under_progress_bar`` (a companion model in place)
    reference       ``reference_beside(session, name, measure, **changes)``: a reference net (e.g. lam = 0) trained
                    alongside the page's model, a bounded time per redraw; ``extra_views`` returning True keeps
                    redrawing until it has caught up
    explain         ``what_you_are_seeing(markdown, latex_list)``
    pages           the page table used by ``app.py`` and the Home page
"""
