"""The semantic latent space: codes of images and data sets, normalisation, sim-vs-real linear classifiers, 2-D embeddings.

The original study trained a single linear layer ``512 -> 1`` on ``z_sem`` normalised per
dimension (mean and std of all sim + real codes, as in the upstream DiffAE), with labels
0 = simulated and 1 = real, Adam (lr 1e-4), batch 16, 50 epochs and an 80/20 split, using either

* ``loss="bce"``: binary cross-entropy on the logit ``s = w . z_n + b`` (logistic regression), or
* ``loss="mse"``: the squared error ``(s - y)^2`` of the *raw* logit against the 0/1 target
  (least squares on the labels, a linear-discriminant-like direction).

The unit weight vector ``w / |w|`` is the "realness" direction used by
:func:`usdiff.translate.manipulate`. t-SNE / PCA embeddings of the codes (drawn by
:func:`usdiff.viz.plot_embedding`) and separation scores tell whether the two domains overlap at all
(in the study they did not).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .utils import as_image_batch, check_matrix, get_device, model_device, to_numpy

__all__ = [
    "encode_images",
    "encode_dataset",
    "as_image_batch",
    "ZNormalizer",
    "LinearClassifier",
    "classifier_loss",
    "train_linear_classifier",
    "embed_tsne",
    "embed_pca",
    "domain_separation",
    "check_domain_labels",
    "DOMAIN_NAMES",
]

LOSSES = ("bce", "mse")
DOMAIN_NAMES = {0: "simulated", 1: "real"}


# ---- codes ---------------------------------------------------------------------------------------

@torch.no_grad()
def encode_images(model, images, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """``z_sem`` of images ``(B, 1, H, W)`` in [-1, 1] as float64 numpy ``(B, D)``, in batches."""
    x = as_image_batch(images)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = model_device(model)
    out = []
    with tqdm(total=len(x), desc="encode z_sem", unit="img", disable=not progress, leave=False) as bar:
        for s in range(0, len(x), batch_size):
            out.append(model.encode(x[s:s + batch_size].to(device)).cpu())
            bar.update(len(out[-1]))
    return torch.cat(out).double().numpy()


@torch.no_grad()
def encode_dataset(model, dataset, batch_size: int = 64, indices: Sequence[int] | None = None,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Semantic codes and domain labels of a dataset yielding ``(image (1, H, W), domain)``.

    Args:
        model: a :class:`usdiff.model.DiffAE` (its ``encode`` is used).
        dataset: e.g. :class:`usdiff.data.BuiltinDataset` (``domain="both"``: sim then real).
        indices: the items to encode (default: all), in this order.

    Returns:
        ``(z (N, D) float64, y (N,) int64)``, ``y`` 0 = sim, 1 = real.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    idx = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(idx) == 0:
        raise ValueError("nothing to encode: the dataset (or the given indices) is empty")
    device = model_device(model)
    zs, ys = [], []
    bar = tqdm(total=len(idx), desc="encode z_sem", unit="img", disable=not progress, leave=False)
    for s in range(0, len(idx), batch_size):
        items = [dataset[int(i)] for i in idx[s:s + batch_size]]
        x = torch.stack([torch.as_tensor(im) for im, _ in items]).float().to(device)
        zs.append(model.encode(x).cpu())
        ys += [int(d) for _, d in items]
        bar.update(len(items))
    bar.close()
    return torch.cat(zs).double().numpy(), np.asarray(ys, dtype=np.int64)



# ---- input checks ------------------------------------------------------------------------------

def _check_z(z, name: str = "z", min_rows: int = 1) -> np.ndarray:
    """``(N, D)`` codes as float64 numpy; raises ``ValueError`` naming `name`."""
    return check_matrix(z, name, min_rows=min_rows)


def check_domain_labels(y, n: int, name: str = "y") -> np.ndarray:
    """Domain labels ``(n,)`` (also ``(n, 1)``) with values 0 (sim) and 1 (real) as int64.

    Raises:
        ValueError: naming `name`, if `y` is not 1-D, does not hold `n` labels or holds another value.
    """
    arr = to_numpy(y, name)
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 2 and arr.shape[1] == 1 else arr
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} labels but z has {n} rows")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        raise ValueError(f"{name} must contain only 0 (sim) and 1 (real), got e.g. {arr[bad][:3].tolist()}")
    return arr.astype(np.int64)


# ---- normalisation -----------------------------------------------------------------------------

class ZNormalizer:
    """Per-dimension standardisation of semantic codes, as the upstream DiffAE does for z_sem.

    ``transform(z) = (z - mean) / std`` with the mean and (unbiased, like ``torch.std``) standard
    deviation of the codes given to :meth:`fit`. Dimensions whose std is ``<= eps`` (constant
    codes) are divided by 1 instead, so they map to 0 and the round trip stays exact.

    Torch tensors in give tensors out (same dtype and device, differentiable); anything else is
    treated as a numpy array.

    Attributes:
        mean_: ``(D,)`` float64 mean.
        std_: ``(D,)`` float64 divisor (the std, with 1 where it is <= eps).
        zero_std_: ``(D,)`` bool, the dimensions that had (near) zero std.
    """

    def __init__(self, eps: float = 1e-8):
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = float(eps)

    def fit(self, z) -> ZNormalizer:
        """Fit on codes ``(N, D)`` (N >= 2); returns self."""
        z = _check_z(z, "z", min_rows=2)
        self.mean_ = z.mean(axis=0)
        std = z.std(axis=0, ddof=1)
        self.zero_std_ = std <= self.eps
        self.std_ = np.where(self.zero_std_, 1.0, std)
        return self

    @property
    def dim(self) -> int:
        self.check_fitted()
        return len(self.mean_)

    def check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise RuntimeError("this ZNormalizer is not fitted yet; call fit(z) first")

    def _params_like(self, z):
        self.check_fitted()
        if z.shape[-1] != len(self.mean_):
            raise ValueError(f"z must have {len(self.mean_)} columns (fitted dimension), got shape {tuple(z.shape)}")
        if isinstance(z, torch.Tensor):
            dtype = z.dtype if z.is_floating_point() else torch.float32
            return (torch.as_tensor(self.mean_, dtype=dtype, device=z.device),
                    torch.as_tensor(self.std_, dtype=dtype, device=z.device), z.to(dtype))
        z = np.asarray(z)
        dtype = z.dtype if np.issubdtype(z.dtype, np.floating) else np.float64
        return self.mean_.astype(dtype), self.std_.astype(dtype), z.astype(dtype, copy=False)

    def transform(self, z):
        """``(..., D) -> (..., D)``: ``(z - mean) / std``."""
        mean, std, z = self._params_like(z)
        return (z - mean) / std

    def inverse_transform(self, z_norm):
        """``(..., D) -> (..., D)``: ``z_norm * std + mean``."""
        mean, std, z_norm = self._params_like(z_norm)
        return z_norm * std + mean

    def fit_transform(self, z):
        return self.fit(z).transform(z)

    def state_dict(self) -> dict:
        """Plain tensors (loadable with ``torch.load(weights_only=True)``)."""
        self.check_fitted()
        return {"mean": torch.from_numpy(self.mean_.copy()), "std": torch.from_numpy(self.std_.copy()),
                "zero_std": torch.from_numpy(self.zero_std_.copy()), "eps": self.eps}

    @classmethod
    def from_state_dict(cls, state: dict) -> ZNormalizer:
        norm = cls(eps=float(state.get("eps", 1e-8)))
        norm.mean_ = np.asarray(state["mean"], dtype=np.float64)
        norm.std_ = np.asarray(state["std"], dtype=np.float64)
        norm.zero_std_ = np.asarray(state.get("zero_std", np.zeros_like(norm.std_, dtype=bool)), dtype=bool)
        if norm.mean_.shape != norm.std_.shape or norm.mean_.ndim != 1:
            raise ValueError(f"mean and std must be (D,) of the same size, got {norm.mean_.shape}, {norm.std_.shape}")
        return norm

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ZNormalizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"normaliser file not found: {path}")
        return cls.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    def __repr__(self) -> str:
        return f"ZNormalizer(dim={len(self.mean_) if hasattr(self, 'mean_') else 'unfitted'}, eps={self.eps})"


# ---- linear classifier -------------------------------------------------------------------------

def classifier_loss(logits: torch.Tensor, y: torch.Tensor, loss: str = "bce") -> torch.Tensor:
    """Mean loss of raw logits ``(N,)`` against 0/1 targets ``(N,)``.

    ``bce``: ``mean(softplus(s) - y s)`` (binary cross-entropy with logits); its gradient with
    respect to ``(w, b)`` of ``s = X w + b`` is ``X^T (sigmoid(s) - y) / N``.
    ``mse``: ``mean((s - y)^2)``; gradient ``2 X^T (s - y) / N``.
    """
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
    if loss == "mse":
        return F.mse_loss(logits, y.to(logits.dtype))
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


class LinearClassifier:
    """One linear layer ``D -> 1`` on normalised codes: simulated (0) vs real (1).

    The defaults are the study's settings (see :meth:`study_settings`); a larger `lr` (e.g.
    1e-2) converges in far fewer epochs, which is what quick CPU runs use.

    Args:
        loss: ``"bce"`` (binary cross-entropy on the logit) or ``"mse"`` (squared error of the
            raw logit against the 0/1 target).
        lr: Adam learning rate.
        epochs: passes over the training codes.
        batch_size: mini-batch size (the last batch of an epoch may be smaller).
        seed: seed of the initial weights and of the batch order.
        device: where to train (default: :func:`usdiff.utils.get_device`).
        normalize: standardise the codes first (the study); when False the layer sees raw z.

    Attributes (after :meth:`fit`):
        normalizer_: the :class:`ZNormalizer` (fitted on the training codes unless one is passed).
        weight_: ``(D,)`` float64 weights on normalised codes; ``bias_``: float.
        history: one dict per epoch with the mean training ``loss`` and ``accuracy``.
    """

    def __init__(self, loss: str = "bce", lr: float = 1e-4, epochs: int = 50, batch_size: int = 16,
                 seed: int = 0, device=None, normalize: bool = True):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.loss = loss
        self.lr = float(lr)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = device
        self.normalize = bool(normalize)
        self.history: list[dict] = []

    @staticmethod
    def study_settings() -> dict:
        """The original study's optimiser settings (the constructor's defaults)."""
        return {"lr": 1e-4, "epochs": 50, "batch_size": 16}

    # -- fitting --
    def fit(self, z, y, progress: bool = True, normalizer: ZNormalizer | None = None) -> LinearClassifier:
        """Train on codes ``(N, D)`` and labels ``(N,)`` in {0, 1}; returns self.

        Args:
            progress: show a tqdm bar over epochs with the running loss.
            normalizer: a fitted :class:`ZNormalizer` to use (the study fitted it on *all*
                sim + real codes); by default one is fitted on `z`.
        """
        z = _check_z(z, "z", min_rows=2)
        y = check_domain_labels(y, len(z))
        if len(np.unique(y)) < 2:
            raise ValueError("y must contain both classes 0 (sim) and 1 (real)")
        if normalizer is not None:
            normalizer.check_fitted()
            if normalizer.dim != z.shape[1]:
                raise ValueError(f"normalizer was fitted on {normalizer.dim}-d codes but z is {z.shape[1]}-d")
            self.normalizer_ = normalizer
        elif self.normalize:
            self.normalizer_ = ZNormalizer().fit(z)
        else:
            self.normalizer_ = None
        device = get_device(self.device)
        x = torch.as_tensor(self._normalized(z), dtype=torch.float32, device=device)
        t = torch.as_tensor(y, dtype=torch.float32, device=device)
        n, d = x.shape
        gen = torch.Generator().manual_seed(self.seed)
        bound = 1.0 / math.sqrt(d)  # torch.nn.Linear's default initialisation, seeded locally
        w = ((torch.rand(d, generator=gen) * 2 - 1) * bound).to(device).requires_grad_(True)
        b = ((torch.rand(1, generator=gen) * 2 - 1) * bound).to(device).requires_grad_(True)
        opt = torch.optim.Adam([w, b], lr=self.lr)
        self.history = []
        bar = tqdm(range(self.epochs), desc=f"linear classifier ({self.loss})", disable=not progress, leave=False)
        with torch.enable_grad():  # also when called under torch.no_grad()
            self._train(x, t, w, b, opt, gen, bar)
        self.weight_ = w.detach().cpu().double().numpy()
        self.bias_ = float(b.detach().cpu().double())
        return self

    def _train(self, x, t, w, b, opt, gen, bar) -> None:
        n = len(x)
        for epoch in bar:
            order = torch.randperm(n, generator=gen).to(x.device)
            total, correct = 0.0, 0
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                logits = x[idx] @ w + b
                loss = classifier_loss(logits, t[idx], self.loss)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                correct += int(((logits.detach() > self._threshold) == (t[idx] > 0.5)).sum())
            self.history.append({"epoch": epoch + 1, "loss": total / n, "accuracy": correct / n})
            bar.set_postfix(loss=f"{total / n:.4f}", refresh=False)

    # -- inference --
    @property
    def _threshold(self) -> float:
        return 0.0 if self.loss == "bce" else 0.5

    def check_fitted(self) -> None:
        if not hasattr(self, "weight_"):
            raise RuntimeError("this LinearClassifier is not fitted yet; call fit(z, y) first")

    def _normalized(self, z: np.ndarray) -> np.ndarray:
        return self.normalizer_.transform(z) if self.normalizer_ is not None else z

    def decision_function(self, z) -> np.ndarray:
        """Raw logit ``s = w . normalize(z) + b`` ``(N,)``; class 1 (real) when ``s`` exceeds
        the threshold (0 for BCE, 0.5 for MSE, whose logit regresses the 0/1 label)."""
        self.check_fitted()
        z = _check_z(z, "z")
        if z.shape[1] != len(self.weight_):
            raise ValueError(f"z must have {len(self.weight_)} columns, got shape {z.shape}")
        return self._normalized(z) @ self.weight_ + self.bias_

    def predict_proba(self, z) -> np.ndarray:
        """``(N, 2)`` scores for (sim, real), rows summing to 1.

        BCE: ``P(real) = sigmoid(s)``, a calibrated-ish probability. MSE: the logit itself
        clipped to [0, 1], a "realness score" (least squares on 0/1 labels), not a probability.
        """
        s = self.decision_function(z)
        p = 1.0 / (1.0 + np.exp(-s)) if self.loss == "bce" else np.clip(s, 0.0, 1.0)
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, z) -> np.ndarray:
        """Labels ``(N,)``: 1 (real) where the logit exceeds the threshold, else 0 (sim)."""
        return (self.decision_function(z) > self._threshold).astype(np.int64)

    def score(self, z, y) -> float:
        """Accuracy on codes ``(N, D)`` and labels ``(N,)``."""
        z = _check_z(z, "z")
        y = check_domain_labels(y, len(z))
        return float((self.predict(z) == y).mean())

    @property
    def direction(self) -> torch.Tensor:
        """Unit vector ``w / |w|`` ``(D,)`` (float32, CPU) in *normalised* z space; pointing to real."""
        self.check_fitted()
        w = torch.from_numpy(self.weight_)
        return (w / w.norm().clamp_min(1e-12)).float()

    # -- persistence --
    def state_dict(self) -> dict:
        """Weights, settings and the normaliser as plain tensors and numbers."""
        self.check_fitted()
        return {"loss": self.loss, "weight": torch.from_numpy(self.weight_.copy()), "bias": self.bias_,
                "settings": {"lr": self.lr, "epochs": self.epochs, "batch_size": self.batch_size,
                             "seed": self.seed, "normalize": self.normalize},
                "normalizer": None if self.normalizer_ is None else self.normalizer_.state_dict(),
                "history": [dict(h) for h in self.history]}

    @classmethod
    def from_state_dict(cls, state: dict) -> LinearClassifier:
        clf = cls(loss=state["loss"], **state.get("settings", {}))
        clf.weight_ = np.asarray(state["weight"], dtype=np.float64)
        clf.bias_ = float(state["bias"])
        clf.normalizer_ = None if state.get("normalizer") is None else ZNormalizer.from_state_dict(state["normalizer"])
        clf.history = list(state.get("history", []))
        return clf

    def __repr__(self) -> str:
        return (f"LinearClassifier(loss={self.loss!r}, lr={self.lr}, epochs={self.epochs}, "
                f"batch_size={self.batch_size}, seed={self.seed})")


def train_linear_classifier(z, y, loss: str = "bce", test_size: float = 0.2, seed: int = 0,
                            normalizer: ZNormalizer | None = None, progress: bool = True,
                            **kwargs) -> tuple[LinearClassifier, dict]:
    """Fit a :class:`LinearClassifier` on a stratified ``1 - test_size`` / `test_size` split.

    As in the study the normaliser is fitted on *all* codes (train and test) unless one is given.

    Args:
        z: codes ``(N, D)``; y: labels ``(N,)``, 0 = sim, 1 = real.
        kwargs: passed to :class:`LinearClassifier` (``lr``, ``epochs``, ``batch_size``, ``device``).

    Returns:
        ``(classifier, report)`` with ``report = {loss, train_accuracy, test_accuracy, n_train,
        n_test, final_loss}``.
    """
    from sklearn.model_selection import train_test_split

    z = _check_z(z, "z", min_rows=4)
    y = check_domain_labels(y, len(z))
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    normalizer = normalizer if normalizer is not None else ZNormalizer().fit(z)
    idx_train, idx_test = train_test_split(np.arange(len(z)), test_size=test_size, random_state=seed,
                                           stratify=y)
    clf = LinearClassifier(loss=loss, seed=seed, **kwargs)
    clf.fit(z[idx_train], y[idx_train], normalizer=normalizer, progress=progress)
    report = {"loss": loss, "train_accuracy": clf.score(z[idx_train], y[idx_train]),
              "test_accuracy": clf.score(z[idx_test], y[idx_test]), "n_train": len(idx_train),
              "n_test": len(idx_test), "final_loss": clf.history[-1]["loss"]}
    return clf, report


# ---- embeddings and separation -----------------------------------------------------------------

def embed_tsne(z, random_state: int = 42, perplexity: float = 30.0, **kwargs) -> np.ndarray:
    """2-D t-SNE of codes ``(N, D)`` -> ``(N, 2)`` (scikit-learn, fitted jointly on all rows).

    The study used scikit-learn's defaults with ``random_state=42`` on the raw codes of both
    domains stacked together; do the same (t-SNE cannot place new points afterwards, so
    stack manipulated codes with the others before calling this). scikit-learn requires
    ``perplexity < N``: when `perplexity` is not, it is lowered to ``max(1, (N - 1) / 3)``
    with a warning (otherwise the given value, by default scikit-learn's 30, is kept).
    """
    from sklearn.manifold import TSNE

    z = _check_z(z, "z", min_rows=3)
    n = len(z)
    if perplexity >= n:
        new = max(1.0, (n - 1) / 3)
        warnings.warn(f"perplexity={perplexity} is too large for {n} points; using {new:.2f} "
                      "(t-SNE needs perplexity < n_samples, and about n/3 at most is advisable)", stacklevel=2)
        perplexity = new
    tsne = TSNE(n_components=2, random_state=random_state, perplexity=perplexity, **kwargs)
    return tsne.fit_transform(z.astype(np.float32)).astype(np.float64)


def embed_pca(z, n_components: int = 2) -> np.ndarray:
    """Project codes ``(N, D)`` on their first `n_components` principal axes -> ``(N, n_components)``."""
    from sklearn.decomposition import PCA

    z = _check_z(z, "z", min_rows=2)
    if not 1 <= n_components <= min(z.shape):
        raise ValueError(f"n_components must be in [1, min(N, D) = {min(z.shape)}], got {n_components}")
    return PCA(n_components=n_components).fit_transform(z)


def domain_separation(z, y, cv: int = 5, seed: int = 0) -> dict:
    """How separable the two domains are in code space.

    Args:
        z: codes ``(N, D)``; y: labels ``(N,)`` (0 = sim, 1 = real).
        cv: folds of the stratified cross-validation of the probe.

    Returns:
        dict with ``probe_accuracy`` (mean cross-validated accuracy of a standardised logistic
        regression: ~0.5 when the domains overlap, ~1 when they are linearly separable),
        ``probe_accuracy_std``, ``silhouette`` (scikit-learn silhouette of the two domains, in
        [-1, 1]), and ``frechet`` (Fréchet distance between Gaussians fitted to each domain).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .metrics.frechet import frechet_distance

    z = _check_z(z, "z", min_rows=4)
    y = check_domain_labels(y, len(z))
    counts = np.bincount(y, minlength=2)
    if counts.min() < max(2, cv):
        raise ValueError(f"each domain needs at least max(2, cv={cv}) codes, got {counts.tolist()} (sim, real)")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    acc = cross_val_score(probe, z, y, cv=folds, scoring="accuracy")
    stats = []
    for k in (0, 1):
        zk = z[y == k]
        stats += [zk.mean(axis=0), np.atleast_2d(np.cov(zk, rowvar=False))]
    return {"probe_accuracy": float(acc.mean()), "probe_accuracy_std": float(acc.std()),
            "silhouette": float(silhouette_score(z, y)), "frechet": float(frechet_distance(*stats))}
