"""Measure: run a trained model over a split once, in batches, and keep what the metrics and figures need.

- ``batched``: the one "encode / decode / score over a split" helper (``over_batches``) and the few
  model passes built on it (``encode``, ``encode_means``, ``decode_mean``, ``recon_nll``).
- ``grid``: the 2-D latent grids and the judge-confidence map over them (the report's holes map and
  the explorer's share ``grid_confidence``).
- ``views``: the arrays the report's figures are drawn from (reconstructions, samples, grid decodes, ...).
- ``store``: those arrays on disk, ``RUN/arrays/*.npz`` (numpy's zip of .npy files: no pickle).
The metrics themselves are pure functions of arrays in ``vaelab.metrics``; ``vaelab.evaluate`` runs them.
"""
