"""The Diffusion Autoencoder: noise schedules, DDIM, semantic encoder, conditional UNet."""
from .config import DiffAEConfig, TrainConfig, get_config
from .ddim import DDIMScheduler
from .diffae import DDIMSteps, DiffAE, count_parameters
from .encoder import SemanticEncoder
from .io import load_model, read_checkpoint, save_model
from .schedules import alphas_cumprod, cosine_beta_schedule, get_schedule, linear_beta_schedule
from .solvers import SOLVER_CHOICES, DPMSolverConfig, DPMSolverPP2M
from .unet import ConditionalUNet

__all__ = [
    "DiffAE", "DDIMSteps", "DiffAEConfig", "TrainConfig", "get_config", "DDIMScheduler", "SemanticEncoder",
    "ConditionalUNet", "linear_beta_schedule", "cosine_beta_schedule", "get_schedule", "alphas_cumprod",
    "count_parameters", "load_model", "read_checkpoint", "save_model", "DPMSolverPP2M", "DPMSolverConfig",
    "SOLVER_CHOICES",
]
