"""Measurements behind the notebooks, one module per question; no figures (:mod:`usdiff.viz`) and no
widgets (:mod:`usdiff.widgets`):

==================  ==============================================================================
``reconstruction``  how exactly ``(x_T, z_sem)`` gives an image back: :func:`reconstruction_error`
``anatomy``         aortas of image sets and along interpolation strips: :func:`anatomy_table`,
                    :func:`strip_anatomy`, :func:`label_maps_at`
``manipulation``    classifier-direction sweeps and their scores: :func:`manipulation_sweep`,
                    :func:`sweep_metrics`, :class:`DDIMSteps`
``comparison``      translation methods side by side: :class:`Knob`, :func:`knob_sweep`,
                    :func:`pick_balanced`, :func:`translation_verdicts`, :func:`liver_speckle_snr`
``diagnostics``     does ``z_sem`` carry the image, where do codes land: :func:`diffae_goals`
                    (:class:`GoalSettings`), :func:`z_swap_ratio`, :func:`fine_texture`,
                    :func:`nearest_domain`
``structure``       label-free structure measures against a segmenter's Dice: :func:`structure_agreement`
==================  ==============================================================================

Codes of images and data sets are :func:`usdiff.latent.encode_images` / :func:`usdiff.latent.encode_dataset`.
"""
from .anatomy import anatomy_table, label_maps_at, strip_anatomy
from .comparison import Knob, knob_sweep, liver_speckle_snr, pick_balanced, translation_verdicts
from .diagnostics import GoalSettings, diffae_goals, fine_texture, nearest_domain, z_swap_ratio
from .manipulation import DDIMSteps, manipulation_sweep, sweep_metrics
from .reconstruction import reconstruction_error
from .structure import agreement_table, structure_agreement

__all__ = [
    "reconstruction_error",
    "anatomy_table", "label_maps_at", "strip_anatomy",
    "DDIMSteps", "manipulation_sweep", "sweep_metrics",
    "Knob", "knob_sweep", "liver_speckle_snr", "pick_balanced", "translation_verdicts",
    "GoalSettings", "diffae_goals", "fine_texture", "nearest_domain", "z_swap_ratio",
    "structure_agreement", "agreement_table",
]
