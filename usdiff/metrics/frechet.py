"""Fréchet distance between Gaussians fitted to features, streaming statistics, and KID.

The Fréchet (2-Wasserstein) distance between ``N(mu1, S1)`` and ``N(mu2, S2)`` is

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).

:func:`fd_from_features` fits the Gaussians to two feature (or code) matrices and returns this
distance: FID when the features are InceptionV3's, FD-US for the ultrasound critics' features, FSD
for DiffAE codes. Everything here runs in float64 with NumPy
only (no SciPy at run time): ``tr((S1 S2)^{1/2})`` is the sum of the square roots of the
eigenvalues of the symmetric positive semi-definite matrix ``L^T S2 L`` with ``S1 = L L^T``,
which avoids the non-symmetric matrix square root (and its spurious imaginary parts).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils import as_float64, check_matrix

__all__ = ["GaussianStats", "frechet_distance", "trace_sqrt_product", "fd_from_features",
           "PolynomialKernel", "kid"]


def check_features(features, name: str = "features", min_samples: int = 2) -> np.ndarray:
    """Validate a feature matrix ``(N, D)`` and return it as float64.

    Raises:
        ValueError: if `features` is not 2-D, has fewer than `min_samples` rows, or has NaN/inf.
    """
    return check_matrix(features, name, min_rows=min_samples)


def _psd_factor(sigma: np.ndarray) -> np.ndarray:
    """A matrix ``B`` with ``B @ B.T == sigma`` for symmetric PSD `sigma` (D, D) -> (D, r).

    Cholesky when `sigma` is numerically positive definite (fast); otherwise the
    eigen-decomposition with tiny negative eigenvalues clamped to zero and null directions
    dropped (exact for rank-deficient covariances, e.g. fewer samples than dimensions).
    """
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        pass
    w, v = np.linalg.eigh(sigma)
    keep = w > max(w.max(initial=0.0), 0.0) * sigma.shape[0] * np.finfo(np.float64).eps
    return v[:, keep] * np.sqrt(w[keep])


def trace_sqrt_product(sigma1, sigma2, eps: float = 1e-6) -> float:
    """``tr((sigma1 @ sigma2)^{1/2})`` for symmetric PSD matrices ``(D, D)``.

    The eigenvalues of ``sigma1 @ sigma2`` equal those of the symmetric PSD matrix
    ``B^T sigma2 B`` where ``B B^T = sigma1``; their square roots are summed after clamping
    round-off negatives to zero. Only if an eigen-solver fails to converge is ``eps * I``
    added to both matrices and the computation retried.
    """
    base1 = 0.5 * (sigma1 + sigma1.T)
    base2 = 0.5 * (sigma2 + sigma2.T)
    for offset in (0.0, eps, 1e3 * eps):
        s1, s2 = base1, base2
        if offset:
            eye = np.eye(s1.shape[0])
            s1, s2 = s1 + offset * eye, s2 + offset * eye
        try:
            b = _psd_factor(s1)
            m = b.T @ s2 @ b
            w = np.linalg.eigvalsh(0.5 * (m + m.T))
            return float(np.sqrt(np.clip(w, 0.0, None)).sum())
        except np.linalg.LinAlgError:
            continue
    raise np.linalg.LinAlgError(
        f"eigen-decomposition did not converge even with eps={1e3 * eps:g} added to the covariances")


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Args:
        mu1, mu2: means ``(D,)``.
        sigma1, sigma2: covariances ``(D, D)``, symmetric positive semi-definite
            (rank-deficient is fine: no offset is needed).
        eps: diagonal offset used only as a fallback if the eigen-solver fails to converge.

    Returns:
        The squared distance ``|mu1-mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})`` (>= 0).

    Raises:
        ValueError: on mismatched shapes, non-square covariances or NaN/inf values.
    """
    mu1, mu2 = as_float64(mu1, "mu1"), as_float64(mu2, "mu2")
    sigma1, sigma2 = as_float64(sigma1, "sigma1"), as_float64(sigma2, "sigma2")
    if mu1.ndim != 1 or mu2.ndim != 1:
        raise ValueError(f"mu1 and mu2 must be 1-D (D,), got shapes {mu1.shape} and {mu2.shape}")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 have different shapes: {mu1.shape} vs {mu2.shape}")
    d = mu1.shape[0]
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}) to match the means, got {s.shape}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2, eps=eps)
    fd = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    # The exact value is >= 0; clamp the round-off of identical inputs (|fd| ~ 1e-12 * tr).
    return max(fd, 0.0)


class GaussianStats:
    """Streaming mean and covariance of feature vectors, in float64.

    Batches are merged with Chan et al.'s parallel update, so the result equals
    ``np.mean(X, 0)`` / ``np.cov(X, rowvar=False)`` of all rows without keeping them.

    Example:
        >>> stats = GaussianStats()
        >>> for feats in batches:        # each (B, D)
        ...     stats.update(feats)
        >>> stats.frechet_distance(other_stats)
    """

    def __init__(self, dim: int | None = None):
        self.dim = dim
        self.n = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None  # sum of outer products of deviations (D, D)

    @classmethod
    def from_features(cls, features) -> GaussianStats:
        """Statistics of a whole feature matrix ``(N, D)``."""
        return cls().update(features)

    def _merge_moments(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        if self.dim is None:
            self.dim = mean_b.shape[0]
        elif mean_b.shape[0] != self.dim:
            raise ValueError(f"features have {mean_b.shape[0]} dimensions, these statistics have {self.dim}")
        if self.n == 0:
            self.n, self._mean, self._m2 = n_b, mean_b.copy(), m2_b.copy()
            return
        n_a, n = self.n, self.n + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (n_a * n_b / n)
        self.n = n

    def update(self, features) -> GaussianStats:
        """Add a batch of features ``(B, D)``; returns self."""
        x = check_features(features, "features", min_samples=1)
        mean_b = x.mean(axis=0)
        xc = x - mean_b
        self._merge_moments(x.shape[0], mean_b, xc.T @ xc)
        return self

    @property
    def mean(self) -> np.ndarray:
        """Mean ``(D,)``."""
        if self.n < 1:
            raise ValueError("no features were added yet")
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance ``(D, D)`` (divides by n - 1)."""
        if self.n < 2:
            raise ValueError(f"the covariance needs at least 2 samples, got n={self.n}")
        return self._m2 / (self.n - 1)

    def frechet_distance(self, other: GaussianStats, eps: float = 1e-6) -> float:
        """Fréchet distance between the Gaussians fitted to these and `other`'s features."""
        return frechet_distance(self.mean, self.cov, other.mean, other.cov, eps=eps)

    def save(self, path: str | Path) -> Path:
        """Write ``n``, ``mu`` and ``sigma`` (unbiased) to an ``.npz`` file; returns its path.

        The ``mu``/``sigma`` keys are those pytorch-fid reads from pre-computed statistics.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, n=np.int64(self.n), mu=self.mean, sigma=self.cov)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GaussianStats:
        """Read statistics written by :meth:`save`.

        Raises:
            FileNotFoundError: if `path` does not exist.
            ValueError: if the file lacks the ``n``, ``mu`` or ``sigma`` arrays.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no statistics file at {path}")
        with np.load(path) as data:
            missing = {"n", "mu", "sigma"} - set(data.files)
            if missing:
                raise ValueError(f"{path} lacks {sorted(missing)}; it was not written by GaussianStats.save")
            n, mu, sigma = int(data["n"]), data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
        stats = cls(dim=mu.shape[0])
        stats.n, stats._mean, stats._m2 = n, mu, sigma * (n - 1)
        return stats

    def __repr__(self) -> str:
        return f"GaussianStats(n={self.n}, dim={self.dim})"


def fd_from_features(features1, features2, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature matrices ``(N1, D)``, ``(N2, D)``.

    The features say which distance it is: InceptionV3's give FID, the critics' US features FD-US,
    DiffAE codes ``z_sem`` FSD.

    Raises:
        ValueError: if either has fewer than 2 rows, NaN/inf, or their widths differ.
    """
    f1 = check_features(features1, "features1")
    f2 = check_features(features2, "features2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features1 and features2 have different widths: {f1.shape[1]} vs {f2.shape[1]}")
    return GaussianStats.from_features(f1).frechet_distance(GaussianStats.from_features(f2), eps=eps)




@dataclass(frozen=True)
class PolynomialKernel:
    """``k(x, y) = (gamma x.y + coef0)^degree``; ``gamma=None`` is ``1 / D`` (torch-fidelity's KID kernel)."""

    degree: int = 3
    gamma: float | None = None
    coef0: float = 1.0

    def __post_init__(self):
        if self.degree < 1:
            raise ValueError(f"degree must be >= 1, got {self.degree}")

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The kernel matrix ``(N, M)`` of rows of `x` ``(N, D)`` and `y` ``(M, D)``."""
        gamma = 1.0 / x.shape[1] if self.gamma is None else float(self.gamma)
        return (gamma * (x @ y.T) + self.coef0) ** self.degree


def _unbiased_mmd2(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    m = k_xx.shape[0]
    off_xx = k_xx.sum() - np.trace(k_xx)
    off_yy = k_yy.sum() - np.trace(k_yy)
    return float((off_xx + off_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid(features1, features2, num_subsets: int = 100, subset_size: int = 1000, *,
        kernel: PolynomialKernel = PolynomialKernel(), seed: int = 0, max_gram: int = 5000) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with a polynomial kernel, averaged over subsets.

    As in torch-fidelity / clean-fid: `kernel` ``k(x, y) = (gamma x.y + coef0)^degree`` with
    ``gamma = 1/D`` and degree 3 by default, `num_subsets` random subsets (without replacement) of size
    `subset_size` drawn from each side with ``np.random.RandomState(seed)``. A `subset_size` not
    below ``min(N1, N2)`` would draw the whole set every time (a spread of 0): it is then set to
    half the smaller set, with a warning.

    Args:
        features1, features2: feature matrices ``(N1, D)`` and ``(N2, D)``.
        max_gram: when ``N1 + N2 <= max_gram`` the kernel matrices are computed once and
            subsets index into them (same result, much faster).

    Returns:
        ``(mean, std)`` of the per-subset estimates (std with ddof=0, as torch-fidelity).

    Raises:
        ValueError: on mismatched widths, fewer than 2 rows, NaN/inf, or bad parameters.
    """
    f1 = check_features(features1, "features1")
    f2 = check_features(features2, "features2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features1 and features2 have different widths: {f1.shape[1]} vs {f2.shape[1]}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    if subset_size < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}")
    n1, n2 = len(f1), len(f2)
    m = subset_size
    if subset_size >= min(n1, n2):
        # subsets as large as a set are that whole set every time: no spread over subsets at all
        m = max(2, min(n1, n2) // 2)
        warnings.warn(f"KID subset_size {subset_size} is not below the smaller set's {min(n1, n2)} rows: "
                      f"using subsets of {m} (half of it)", stacklevel=2)
    rng = np.random.RandomState(seed)
    full = n1 + n2 <= max_gram
    if full:
        k11, k22, k12 = kernel(f1, f1), kernel(f2, f2), kernel(f1, f2)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        a = rng.choice(n1, m, replace=False)
        b = rng.choice(n2, m, replace=False)
        if full:
            k_xx, k_yy, k_xy = k11[np.ix_(a, a)], k22[np.ix_(b, b)], k12[np.ix_(a, b)]
        else:
            x, y = f1[a], f2[b]
            k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
        values[i] = _unbiased_mmd2(k_xx, k_yy, k_xy)
    return float(values.mean()), float(values.std())
