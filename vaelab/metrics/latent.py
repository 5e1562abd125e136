"""Latent-structure metrics: how much the codes say about the labels, and how they use the prior.

Codes are posterior means of the test split (labels only for evaluation), as in DESIGN.md.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from vaelab.metrics._arrays import ArrayLike, as_labels, as_matrix, as_numpy


def _xy(z: ArrayLike, y: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    z, y = as_matrix(z, name), as_labels(y)
    if len(z) != len(y):
        raise ValueError(f"{name} has {len(z)} rows but its labels have {len(y)}")
    return z, y


def linear_probe_predictions(z_train: ArrayLike, y_train: ArrayLike, z_test: ArrayLike,
                             seed: int = 0) -> np.ndarray:
    """Labels predicted for the test codes by a multinomial logistic regression on standardised train codes.

    Standardisation (train mean/std) makes the probe blind to the codes' scale, which differs
    between an AE and a VAE. L2 penalty C=1 (sklearn default), lbfgs, max_iter=5000.

    Args:
        z_train: (N, D) codes, y_train: (N,) int labels; z_test: (M, D).
    Returns:
        (M,) int64 predicted labels.
    """
    z_train, y_train = _xy(z_train, y_train, "z_train")
    z_test = as_matrix(z_test, "z_test")
    from sklearn.linear_model import LogisticRegression   # sklearn is imported where used: `vaelab train` needs
    from sklearn.preprocessing import StandardScaler       # none of it (it cost 1.5 s of every process start)

    scaler = StandardScaler().fit(z_train)
    clf = LogisticRegression(max_iter=5000, random_state=seed)
    clf.fit(scaler.transform(z_train), y_train)
    return clf.predict(scaler.transform(z_test)).astype(np.int64)


def linear_probe_accuracy(z_train: ArrayLike, y_train: ArrayLike, z_test: ArrayLike, y_test: ArrayLike,
                          seed: int = 0) -> float:
    """Test accuracy of the linear probe of ``linear_probe_predictions``.

    Args:
        z_train: (N, D) codes, y_train: (N,) int labels; z_test: (M, D), y_test: (M,).
    Returns:
        accuracy in [0, 1].
    """
    z_test, y_test = _xy(z_test, y_test, "z_test")
    return float(np.mean(linear_probe_predictions(z_train, y_train, z_test, seed=seed) == y_test))


def nearest_centroid_distance(z_train: ArrayLike, y_train: ArrayLike, z_test: ArrayLike) -> np.ndarray:
    """Euclidean distance of each test code to the nearest class centroid of the (standardised) train codes.

    A deterministic model's stand-in for "how unsure is the model about this image": far from every
    class centre = unsure. Standardised with the train codes' mean/std, like the linear probe.

    Args:
        z_train: (N, D) codes, y_train: (N,) int labels; z_test: (M, D).
    Returns:
        (M,) float64 distances.
    """
    z_train, y_train = _xy(z_train, y_train, "z_train")
    z_test = as_matrix(z_test, "z_test")
    m, s = z_train.mean(0), z_train.std(0)
    s = np.where(s > 0, s, 1.0)
    zt, zq = (z_train - m) / s, (z_test - m) / s
    centroids = np.stack([zt[y_train == c].mean(0) for c in np.unique(y_train)])          # (C, D)
    d2 = (zq**2).sum(1)[:, None] - 2 * zq @ centroids.T + (centroids**2).sum(1)[None, :]  # (M, C)
    return np.sqrt(np.maximum(d2.min(1), 0.0))


def knn_accuracy(z_train: ArrayLike, y_train: ArrayLike, z_test: ArrayLike, y_test: ArrayLike,
                 k: int = 5) -> float:
    """Test accuracy of a k-NN (Euclidean, majority vote) classifier on the raw codes.

    Raw, not standardised: k-NN measures the geometry the decoder sees.

    Args:
        z_train: (N, D), y_train: (N,); z_test: (M, D), y_test: (M,); k: neighbours (DESIGN: 5).
    Returns:
        accuracy in [0, 1].
    """
    z_train, y_train = _xy(z_train, y_train, "z_train")
    z_test, y_test = _xy(z_test, y_test, "z_test")
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=min(k, len(z_train))).fit(z_train, y_train)
    return float(np.mean(clf.predict(z_test) == y_test))


def kmeans_scores(z: ArrayLike, y: ArrayLike, n_clusters: int, seed: int = 0) -> dict[str, float]:
    """k-means (k = n_clusters, 10 inits) on the codes, scored against the labels.

    Args:
        z: (N, D) codes; y: (N,) int labels; n_clusters: usually the number of classes.
    Returns:
        {"nmi": normalised mutual information (arithmetic mean), "ari": adjusted Rand index}.
    """
    z, y = _xy(z, y, "z")
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pred = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(z)
    return {"nmi": float(normalized_mutual_info_score(y, pred)), "ari": float(adjusted_rand_score(y, pred))}


def silhouette(z: ArrayLike, y: ArrayLike, max_n: int = 5000, seed: int = 0) -> float:
    """Mean silhouette coefficient of the codes grouped by label (Rousseeuw 1987), Euclidean.

    s_i = (b_i - a_i) / max(a_i, b_i), a_i = mean distance to its own label, b_i = to the nearest
    other label. Silhouette is O(N^2): above ``max_n`` codes a seeded random subset is scored.

    Args:
        z: (N, D) codes; y: (N,) int labels with at least 2 distinct values.
    Returns:
        a float in [-1, 1].
    """
    z, y = _xy(z, y, "z")
    if len(z) > max_n:
        idx = np.random.default_rng(seed).choice(len(z), size=max_n, replace=False)
        z, y = z[idx], y[idx]
    if not 2 <= len(np.unique(y)) <= len(z) - 1:
        raise ValueError("silhouette needs between 2 and N-1 distinct labels")
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(z, y))


def active_units(mu: ArrayLike, threshold: float = 0.01) -> dict:
    """Active latent units (Burda et al. 2016, IWAE, Sec. 5.2).

    A_u = Cov_x(E_{q(z|x)}[z_u]) > threshold. With (S, N, D) input the S draws per x (e.g.
    posterior samples, or posterior means under repeated stochastic encodings) are averaged
    to estimate E_q[z_u] first; (N, D) input is taken to be E_q[z] already. The variance over x
    is the population variance (ddof=0), in float64.

    Args:
        mu: (S, N, D) or (N, D).
        threshold: activity threshold (Burda et al.: 0.01).
    Returns:
        {"n_active": int, "variances": (D,) float64 array of Cov_x E_q[z_u]}.
    """
    mu = as_numpy(mu)
    if mu.ndim == 3:
        mu = mu.mean(0)  # (N, D)
    if mu.ndim != 2:
        raise ValueError(f"mu must have shape (S, N, D) or (N, D), got {mu.shape}")
    variances = mu.var(0)
    return {"n_active": int(np.sum(variances > threshold)), "variances": variances}


def kl_per_dimension(mu: ArrayLike, logvar: ArrayLike) -> np.ndarray:
    """Mean over x of the analytic KL(q(z_d|x) || N(0, 1)) per latent dimension.

    Kingma & Welling 2014, App. B: KL_d = 0.5 * (mu_d^2 + exp(logvar_d) - 1 - logvar_d).

    Args:
        mu, logvar: (N, D) posterior means and log-variances.
    Returns:
        (D,) float64 array, nats; sums to the mean total KL.
    """
    mu, logvar = as_matrix(mu, "mu"), as_matrix(logvar, "logvar")
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {mu.shape} and logvar {logvar.shape} differ")
    return (0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar)).mean(0)


def aggregate_posterior_kl(z: ArrayLike) -> float:
    """KL(N(m, S) || N(0, I)) for the Gaussian fitted (mean, unbiased covariance) to the codes.

    Closed form: 0.5 * (tr S + m^T m - D - log det S), in float64. It measures how far the
    codes' overall cloud is from the prior (0 for a perfectly matched moment fit). A degenerate
    fit (a dimension the codes never vary in) is infinitely far: returns ``inf``.

    Args:
        z: (N, D) codes, N >= 2.
    Returns:
        nats, >= 0 (or inf).
    """
    z = as_matrix(z, "z")
    if len(z) < 2:
        raise ValueError("need at least 2 codes to fit a covariance")
    d = z.shape[1]
    m = z.mean(0)
    s = np.cov(z, rowvar=False).reshape(d, d)
    sign, logdet = np.linalg.slogdet(s)
    if sign <= 0:
        return math.inf
    return float(max(0.5 * (np.trace(s) + m @ m - d - logdet), 0.0))


def log_aggregate_posterior(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, chunk_size: int = 1024
                            ) -> torch.Tensor:
    """log q(z) of the aggregate posterior q(z) = (1/N) sum_j N(z; mu_j, diag exp(logvar_j)), at each row of z.

    log q(z|x_j) = -0.5 * sum_d (z_d - mu_jd)^2 / var_jd - 0.5 * (D log 2pi + sum_d logvar_jd), expanded so
    that each chunk of rows is three matmuls instead of a (c, N, D) tensor; logsumexp over j. Float64.

    Args:
        z: (M, D) points; mu, logvar: (N, D) float64 posterior parameters.
    Returns:
        (M,) float64 log-densities.
    """
    n, d = mu.shape
    inv_var = torch.exp(-logvar)  # (N, D)
    mu_over_var = mu * inv_var
    const = -0.5 * (d * math.log(2 * math.pi) + logvar.sum(1) + (mu * mu_over_var).sum(1))  # (N,)
    log_qz = torch.empty(len(z), dtype=torch.float64)
    for i in range(0, len(z), chunk_size):
        zc = z[i:i + chunk_size]  # (c, D)
        quad = (zc**2) @ inv_var.T - 2.0 * zc @ mu_over_var.T  # (c, N), + mu^2/var in const
        log_qz[i:i + chunk_size] = torch.logsumexp(-0.5 * quad + const, dim=1) - math.log(n)
    return log_qz


def mutual_information(mu: ArrayLike, logvar: ArrayLike, n_samples: int = 1, seed: int = 0,
                       chunk_size: int = 1024) -> float:
    """Mutual information I(x; z) under the aggregate posterior q(z) = (1/N) sum_n q(z|x_n).

    I(x; z) = E_x E_{q(z|x)}[log q(z|x)] - E_{q(z)}[log q(z)]
            = E_x[KL(q(z|x) || p(z))] - KL(q(z) || p(z))   (Hoffman & Johnson 2016).
    Minibatch estimator of He et al. 2019 ("Lagging inference networks", calc_mi): draw
    z_i ~ q(z|x_n) (``n_samples`` per x) and set log q(z_i) ~= logsumexp_j log q(z_i|x_j) - log N
    over all N posteriors (x_n's own included). Deviation from their code: the first term uses
    the same draws, mean_i log q(z_i|x_n), instead of the analytic entropy. Its expectation is
    the same, but pairing cancels most Monte-Carlo noise, gives exactly 0 when every posterior
    is the same, and keeps every estimate <= log N (since log q(z_i) >= log q(z_i|x_n) - log N).
    Float64; the N x N log-densities are built by matrix products in row chunks, so memory is
    O(chunk_size * N).

    Args:
        mu, logvar: (N, D) posterior parameters of N inputs (the minibatch or the test split).
        n_samples: z draws per x; seed: seeds those draws.
    Returns:
        nats, <= log N (slightly below 0 possible from Monte-Carlo error when I is ~0).
    """
    mu_np, logvar_np = as_matrix(mu, "mu"), as_matrix(logvar, "logvar")
    if mu_np.shape != logvar_np.shape:
        raise ValueError(f"mu {mu_np.shape} and logvar {logvar_np.shape} differ")
    mu_t, logvar_t = torch.from_numpy(mu_np), torch.from_numpy(logvar_np)
    n, d = mu_t.shape
    log2pi = math.log(2 * math.pi)
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(n_samples, n, d, generator=gen, dtype=torch.float64)  # (S, N, D)
    z = (mu_t + torch.exp(0.5 * logvar_t) * eps).reshape(-1, d)  # (S*N, D)
    # log q(z_i|x_n) at its own posterior, directly: eps is the standardised deviation.
    log_q_own = (-0.5 * (eps**2).sum(2) - 0.5 * (d * log2pi + logvar_t.sum(1))).reshape(-1)  # (S*N,)
    log_qz = log_aggregate_posterior(z, mu_t, logvar_t, chunk_size)
    # Each term is <= log N exactly; the clamp only removes matmul round-off above it.
    return float((log_q_own - log_qz).clamp(max=math.log(n)).mean())
