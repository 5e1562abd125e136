"""Pure metric functions of arrays (numpy or torch in; floats, small dicts or numpy arrays out).

One module per concept: ``fd`` (Fréchet distance), ``prd`` (k-NN precision/recall, density/coverage,
realism), ``latent`` (latent-structure metrics), ``image`` (reconstruction error), ``classes``
(judge-based), ``intervals`` (bootstrap intervals and the verdict rule), ``novelty`` (memorisation),
``holes`` (ELBO surgery, prior mass in holes).
Definitions: DESIGN.md, "Metric definitions".
"""
from __future__ import annotations

from vaelab.metrics.classes import class_coverage, judge_confidence
from vaelab.metrics.fd import frechet_distance, gaussian_frechet_distance
from vaelab.metrics.image import PSNR_CAP_DB, bce_sum_per_image, mse_per_image, psnr, psnr_per_image
from vaelab.metrics.latent import (
    active_units,
    aggregate_posterior_kl,
    kl_per_dimension,
    kmeans_scores,
    knn_accuracy,
    linear_probe_accuracy,
    mutual_information,
    silhouette,
)
from vaelab.metrics.likelihood import (
    importance_weighted_curve,
    importance_weighted_nll,
    likelihood_kind,
    negative_elbo,
)
from vaelab.metrics.prd import precision_recall

__all__ = [
    "PSNR_CAP_DB",
    "active_units",
    "aggregate_posterior_kl",
    "bce_sum_per_image",
    "class_coverage",
    "frechet_distance",
    "gaussian_frechet_distance",
    "importance_weighted_curve",
    "importance_weighted_nll",
    "likelihood_kind",
    "judge_confidence",
    "kl_per_dimension",
    "kmeans_scores",
    "knn_accuracy",
    "linear_probe_accuracy",
    "mse_per_image",
    "mutual_information",
    "negative_elbo",
    "precision_recall",
    "psnr",
    "psnr_per_image",
    "silhouette",
]
