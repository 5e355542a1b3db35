"""Sample-quality metrics that run offline.

* :mod:`~usdiff.metrics.frechet`: Fréchet distance, streaming Gaussian statistics, KID.
* :mod:`~usdiff.metrics.inception`: InceptionV3 pool2 (192-d) / pool3 (2048-d) features from
  local weight files (FID); nothing is downloaded.
* :mod:`~usdiff.metrics.semantic`: FSD (Fréchet semantic distance) on the DiffAE's own ``z_sem``,
  the fallback when no Inception weights are available (not comparable to FID).
* :mod:`~usdiff.metrics.evaluate`: folder-to-folder FID/KID, distance reports, FD bias vs n.
"""
from .evaluate import (
    diffae_samples,
    distance_report,
    fid_bias_curve,
    fid_folders,
    report_table,
    take_images,
)
from .frechet import (
    GaussianStats,
    PolynomialKernel,
    fd_from_features,
    frechet_distance,
    kid,
    trace_sqrt_product,
)
from .inception import InceptionFeatures, extract_features, find_inception_weights
from .semantic import FSD_NAME, SemanticFeatures

__all__ = [
    "FSD_NAME",
    "GaussianStats",
    "InceptionFeatures",
    "PolynomialKernel",
    "SemanticFeatures",
    "diffae_samples",
    "distance_report",
    "extract_features",
    "fd_from_features",
    "fid_bias_curve",
    "fid_folders",
    "find_inception_weights",
    "frechet_distance",
    "kid",
    "report_table",
    "take_images",
    "trace_sqrt_product",
]
