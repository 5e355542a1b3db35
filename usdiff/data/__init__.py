"""Built-in paired sim/real-like ultrasound data and loaders for your own images.

`make_phantom` draws a random abdominal label map, `render_sim` / `render_real` turn it into a
clean simulated and a real-like B-mode image (``*_with_envelope`` also return the envelope),
`generate_dataset` / `ensure_dataset` write the paired data set to disk, and the datasets
(`BuiltinDataset`, `USImageFolder`, `TwoDomainDataset`) load images as ``(1, H, W)`` tensors in
``[-1, 1]`` with a domain label; `read_label_map` / `resize_label_maps` read and resize label maps,
`load_builtin_arrays` holds a split in memory, and `augment_appearance` is the one appearance
augmentation.
"""
from .generate import (
    assign_splits,
    ensure_dataset,
    generate_dataset,
    is_builtin_folder,
    item_seed,
    load_manifest,
    render_item,
)
from .phantom import (
    ACOUSTICS,
    AORTA,
    BONE,
    LABEL_NAMES,
    NUM_LABELS,
    TISSUES,
    Phantom,
    TissueProperties,
    aorta_mask,
    count_components,
    hounsfield,
    make_phantom,
    tissue_colors,
    tissue_table,
)
from .render import (
    RAYLEIGH_SNR,
    FanGeometry,
    OperatorSettings,
    RealPhysics,
    fan_geometry,
    homogeneous_mask,
    local_snr_map,
    render_real,
    render_real_with_envelope,
    render_sim,
    render_sim_with_envelope,
    shadow_mask,
    speckle_snr,
)

_DATASETS = ("USImageFolder", "TwoDomainDataset", "BuiltinDataset", "SIM", "REAL", "DOMAINS",
             "IMAGE_EXTENSIONS", "list_images", "read_image", "load_image", "read_label_map",
             "resize_label_maps", "fit_label_map", "stack_images", "load_builtin_arrays")
_AUGMENT = ("Appearance", "CRITIC_APPEARANCE", "SPECKLE_APPEARANCE", "augment_appearance")

__all__ = [
    "ACOUSTICS", "AORTA", "BONE", "LABEL_NAMES", "NUM_LABELS", "TISSUES", "Phantom", "TissueProperties",
    "aorta_mask", "count_components", "hounsfield", "make_phantom", "tissue_colors", "tissue_table",
    "RAYLEIGH_SNR", "FanGeometry", "OperatorSettings", "RealPhysics", "fan_geometry", "homogeneous_mask",
    "local_snr_map", "render_real", "render_real_with_envelope", "render_sim", "render_sim_with_envelope",
    "shadow_mask", "speckle_snr",
    "assign_splits", "ensure_dataset", "generate_dataset", "is_builtin_folder", "item_seed", "load_manifest", "render_item",
    *_DATASETS,
    *_AUGMENT,
]


def __getattr__(name):
    # The torch datasets load lazily, so that rendering and data generation do not import torch.
    if name in _DATASETS:
        from . import datasets

        return getattr(datasets, name)
    if name in _AUGMENT:
        from . import augment

        return getattr(augment, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
