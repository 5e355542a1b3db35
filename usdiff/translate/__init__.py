"""Simulated -> real translation: interpolation paths and interchangeable translation methods.

Every method is a small object with the same interface (:class:`~usdiff.translate.base.Translator`):
settings in the constructor (fit settings, frozen by ``fit``, and knobs, read by ``translate``),
``fit(model, sim, real, *, sim_labels=None, seed=0)`` on unpaired images, ``translate(model, x)``.
Pick one by name with :func:`get_method` (``usdiff translate --method NAME``):

==============  ===================================================================================
``classifier``  the study: ``z_sem`` along a linear classifier's realness direction (:mod:`.classifier`)
``transport``   ``z_sem`` by the optimal-transport map between Gaussian fits of the code clouds
``sdedit``      stochastic noising to ``t0``, DDIM back with the transported ``z_sem`` (+ ILVR anchor)
``guided``      ``sdedit`` steered towards the source's label map by a sim-trained segmenter
``cyclegan``    the baseline: a compact CycleGAN (no DiffAE)
==============  ===================================================================================
"""
from .base import METHODS, Translator, get_method, load_method, save_method, translate_batches
from .classifier import (
    SCALES,
    ClassifierTranslator,
    fit_direction,
    load_direction,
    manipulate,
    manipulate_z,
    save_direction,
)
from .cyclegan import CycleGANSettings, CycleGANTranslator, train_cyclegan
from .folder import (
    FitData,
    default_method_path,
    resolve_method,
    translate_folder,
    unpaired_training_data,
)
from .guided import GuidedTranslator
from .paths import interpolate, lerp, slerp
from .sdedit import SDEditTranslator, low_pass
from .transport import TransportTranslator, apply_transport, gaussian_transport

__all__ = [
    "METHODS", "Translator", "get_method", "load_method", "save_method", "translate_batches",
    "SCALES", "ClassifierTranslator", "fit_direction", "load_direction", "manipulate", "manipulate_z",
    "save_direction",
    "CycleGANSettings", "CycleGANTranslator", "train_cyclegan",
    "FitData", "default_method_path", "resolve_method", "translate_folder", "unpaired_training_data",
    "GuidedTranslator", "interpolate", "lerp", "slerp", "SDEditTranslator", "low_pass",
    "TransportTranslator", "apply_transport", "gaussian_transport",
]
