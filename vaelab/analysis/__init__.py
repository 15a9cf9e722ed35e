"""What a trained model shows, split by subject; data in, numpy arrays out.

- :mod:`~vaelab.analysis.inference`: running a model on data (eval mode, batching, codes, decodings)
- :mod:`~vaelab.analysis.latent_maps`: t-SNE / PCA maps of codes, the plane they are drawn in, Gaussians in it
- :mod:`~vaelab.analysis.image_grids`: filter grids and image grids
- :mod:`~vaelab.analysis.generation`: manifold, interpolation, traversal, prior and mixture samples
- :mod:`~vaelab.analysis.sparsity`: the sparse and k-sparse lessons' measures
- :mod:`~vaelab.analysis.robustness`: the denoising and contractive lessons' measures
- :mod:`~vaelab.analysis.history_rows`: curves and splits read from a run's history rows

Every function that runs a model does so in eval mode under ``torch.no_grad()`` and puts the model back in the
mode it found it in.
"""
