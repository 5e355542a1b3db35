"""Model and training configurations, and the named presets ``tiny``, ``small`` and ``paper``."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

SCHEDULE_CHOICES = ("linear", "cosine")
PREDICTION_CHOICES = ("eps", "v")
SPACING_CHOICES = ("leading", "trailing")


@dataclass
class DiffAEConfig:
    """Architecture and diffusion settings of a :class:`~usdiff.model.diffae.DiffAE`.

    Attributes:
        image_size: square image side in pixels.
        in_channels: image channels (1 for ultrasound).
        base_channels: UNet and encoder width at full resolution.
        channel_mult: UNet multiplier per level; the image halves between levels.
        num_res_blocks: UNet residual blocks per level.
        attn_resolutions: feature-map sides with self-attention (UNet and encoder; middle always).
        dropout: dropout in the residual blocks.
        z_dim: size of the semantic code z_sem.
        enc_channel_mult: encoder multiplier per level.
        enc_num_res_blocks: encoder residual blocks per level (default: `num_res_blocks`).
        num_heads: attention heads.
        schedule: noise schedule, "linear" or "cosine".
        T: number of training diffusion steps.
        prediction: what the UNet outputs: "eps" (the noise; DDPM, DiffAE, the study) or "v"
            (v = sqrt(abar) eps - sqrt(1 - abar) x_0; Salimans & Ho 2022).
        zero_terminal_snr: rescale the schedule so that x_{T-1} holds no trace of the image
            (Lin et al. 2024); needs ``prediction="v"``.
        timestep_spacing: sampling grid, "leading" (DDIM, DiffAE: starts at T - T/steps) or
            "trailing" (starts at T - 1, Lin et al. 2024).
    """

    image_size: int = 64
    in_channels: int = 1
    base_channels: int = 16
    channel_mult: tuple = (1, 2, 4, 4)
    num_res_blocks: int = 1
    attn_resolutions: tuple = (8,)
    dropout: float = 0.0
    z_dim: int = 128
    enc_channel_mult: tuple = (1, 2, 4, 4, 4)
    enc_num_res_blocks: int | None = None
    num_heads: int = 1
    schedule: str = "cosine"
    T: int = 1000
    prediction: str = "eps"
    zero_terminal_snr: bool = False
    timestep_spacing: str = "leading"

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)
        self.enc_channel_mult = tuple(self.enc_channel_mult)
        self.attn_resolutions = tuple(self.attn_resolutions)
        if self.enc_num_res_blocks is None:
            self.enc_num_res_blocks = self.num_res_blocks
        for name in ("image_size", "in_channels", "base_channels", "num_res_blocks", "enc_num_res_blocks",
                     "z_dim", "num_heads", "T"):
            _positive_int(self, name)
        for name in ("channel_mult", "enc_channel_mult"):
            mult = getattr(self, name)
            if not mult or not all(isinstance(m, int) and m > 0 for m in mult):
                raise ValueError(f"DiffAEConfig.{name} must be a non-empty tuple of positive ints, got {mult!r}")
            factor = 2 ** (len(mult) - 1)
            if self.image_size % factor:
                raise ValueError(f"DiffAEConfig.image_size={self.image_size} must be divisible by {factor} "
                                 f"because {name} has {len(mult)} levels")
        levels = [self.image_size // 2**i for i in range(len(self.channel_mult))]
        if any(r not in levels for r in self.attn_resolutions):
            raise ValueError(f"DiffAEConfig.attn_resolutions={self.attn_resolutions} must be among the UNet's "
                             f"feature-map sides {levels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DiffAEConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.schedule not in SCHEDULE_CHOICES:
            raise ValueError(f"DiffAEConfig.schedule must be one of {SCHEDULE_CHOICES}, got {self.schedule!r}")
        if self.prediction not in PREDICTION_CHOICES:
            raise ValueError(f"DiffAEConfig.prediction must be one of {PREDICTION_CHOICES}, got {self.prediction!r}")
        if self.timestep_spacing not in SPACING_CHOICES:
            raise ValueError(f"DiffAEConfig.timestep_spacing must be one of {SPACING_CHOICES}, "
                             f"got {self.timestep_spacing!r}")
        if self.zero_terminal_snr and self.prediction != "v":
            raise ValueError("DiffAEConfig.zero_terminal_snr=True needs prediction='v' (an eps prediction "
                             "cannot give x_0 where alpha_bar = 0)")
        if any(self.base_channels * m % self.num_heads for m in self.channel_mult + self.enc_channel_mult):
            raise ValueError(f"DiffAEConfig.num_heads={self.num_heads} must divide every level's channels")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DiffAEConfig:
        """Inverse of `to_dict`; unknown keys raise ``ValueError`` naming them."""
        return _from_dict(cls, d)


@dataclass
class TrainConfig:
    """Optimisation settings used by :class:`usdiff.train.Trainer`.

    Attributes:
        batch_size: images per step.
        lr: learning rate.
        weight_decay: 0 uses Adam (the study), > 0 uses AdamW.
        grad_clip: max global gradient norm (0 disables clipping).
        ema_decay: decay of the exponential moving average of the weights.
        ema_warmup: ramp the EMA decay as min(decay, (1 + n) / (10 + n)) over the first updates.
        total_steps: training steps; if None, `epochs` full passes over the data are used.
        epochs: passes over the data when `total_steps` is None.
        log_every: steps between progress-bar updates of the loss.
        sample_every: steps between reconstruction grids in ``out_dir/samples`` (0: never).
        ckpt_every: steps between checkpoints ``out_dir/ckpt.pt`` (0: only at the end of `fit`).
        amp: fp16 mixed precision (used on CUDA only).
        num_workers: DataLoader worker processes (at most the CPUs available; 0 = load in the main process).
        seed: seed of the data order, the diffusion noise and the initial weights.
        loss_weighting: ``"uniform"`` (DDPM's simple loss, the study) or ``"min_snr"``
            (Min-SNR-gamma weighting, Hang et al. 2023; see ``DiffAE.training_loss``).
        min_snr_gamma: gamma of the Min-SNR weighting.
        warmup_steps: linear learning-rate warm-up over this many steps (0: none).
        bf16_cpu: bfloat16 autocast when training on a CPU (the CUDA path uses `amp`).
    """

    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    ema_warmup: bool = True
    total_steps: int | None = None
    epochs: int | None = 250
    log_every: int = 10
    sample_every: int = 1000
    ckpt_every: int = 1000
    amp: bool = True
    num_workers: int = 0
    seed: int = 0
    loss_weighting: str = "uniform"
    min_snr_gamma: float = 5.0
    warmup_steps: int = 0
    bf16_cpu: bool = False

    def __post_init__(self):
        for name in ("batch_size", "log_every"):
            _positive_int(self, name)
        for name in ("sample_every", "ckpt_every", "num_workers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be a non-negative int, got {getattr(self, name)!r}")
        if self.total_steps is None and self.epochs is None:
            raise ValueError("TrainConfig.total_steps and TrainConfig.epochs cannot both be None")
        if self.total_steps is not None:
            _positive_int(self, "total_steps")
        if self.epochs is not None:
            _positive_int(self, "epochs")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip < 0:
            raise ValueError(f"TrainConfig.grad_clip must be >= 0, got {self.grad_clip}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.loss_weighting not in ("uniform", "min_snr"):
            raise ValueError(f"TrainConfig.loss_weighting must be 'uniform' or 'min_snr', got {self.loss_weighting!r}")
        if not self.min_snr_gamma > 0:
            raise ValueError(f"TrainConfig.min_snr_gamma must be > 0, got {self.min_snr_gamma}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps must be a non-negative int, got {self.warmup_steps!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return _from_dict(cls, d)


def _positive_int(cfg, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{type(cfg).__name__}.{name} must be a positive int, got {value!r}")


def _from_dict(cls, d: dict):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
    return cls(**d)


def tiny() -> tuple[DiffAEConfig, TrainConfig]:
    """64 px, 1.55 M parameters (3.1 MB in fp16): tests, CI, the shipped checkpoint, CPU notebooks.

    Widths 16-32-64-64 keep the full-resolution levels cheap: training costs about 2.6 GFLOP per
    image (forward + backward), about 20 images/s on 2 CPU cores.
    """
    model = DiffAEConfig(image_size=64, base_channels=16, channel_mult=(1, 2, 4, 4), num_res_blocks=1,
                         attn_resolutions=(8,), dropout=0.0, z_dim=128, enc_channel_mult=(1, 2, 4, 4, 4),
                         num_heads=1, schedule="cosine", T=1000)
    train = TrainConfig(batch_size=16, lr=2e-4, grad_clip=1.0, ema_decay=0.999, total_steps=3000, epochs=None,
                        log_every=10, sample_every=500, ckpt_every=500, amp=True, seed=0)
    return model, train


def small() -> tuple[DiffAEConfig, TrainConfig]:
    """64 px, 25.8 M parameters: a better model in an hour or two on a laptop GPU."""
    model = DiffAEConfig(image_size=64, base_channels=64, channel_mult=(1, 2, 2, 4), num_res_blocks=2,
                         attn_resolutions=(16,), dropout=0.1, z_dim=256, enc_channel_mult=(1, 2, 2, 4, 4),
                         num_heads=1, schedule="cosine", T=1000)
    train = TrainConfig(batch_size=32, lr=1e-4, grad_clip=1.0, ema_decay=0.9995, total_steps=30_000,
                        epochs=None, log_every=20, sample_every=2000, ckpt_every=2000, amp=True, seed=0)
    return model, train


def paper() -> tuple[DiffAEConfig, TrainConfig]:
    """The original study's settings (a fork of the upstream DiffAE).

    128x128 grayscale, base 64, multipliers (1, 2, 4, 8), attention at 16x16 and in the middle,
    1 head, 2 residual blocks per level, dropout 0.1, encoder multipliers (1, 2, 4, 8, 8), z 512,
    T = 1000 with the cosine schedule; Adam lr 1e-4, no weight decay, grad-clip 1, batch 16, fp16,
    EMA 0.9999 from the first step (the study's code has no EMA warm-up, so ``ema_warmup=False``
    here; the small presets keep the warm-up, which helps runs of a few thousand steps), 250 epochs.

    The study reports about 92 M parameters; this implementation has 92.43 M (UNet 66.32 M,
    semantic encoder 26.11 M). Upstream's residual blocks also act as resamplers
    (``resblock_updown``) where we use one strided / upsampling convolution, and its time
    embedding is 512 wide where ours is 4 x base = 256: the totals still agree within 1 %.
    """
    model = DiffAEConfig(image_size=128, in_channels=1, base_channels=64, channel_mult=(1, 2, 4, 8),
                         num_res_blocks=2, attn_resolutions=(16,), dropout=0.1, z_dim=512,
                         enc_channel_mult=(1, 2, 4, 8, 8), enc_num_res_blocks=2, num_heads=1,
                         schedule="cosine", T=1000)
    train = TrainConfig(batch_size=16, lr=1e-4, weight_decay=0.0, grad_clip=1.0, ema_decay=0.9999,
                        ema_warmup=False, total_steps=None, epochs=250, log_every=50, sample_every=5000, ckpt_every=5000,
                        amp=True, num_workers=4, seed=0)
    return model, train


PRESETS = {"tiny": tiny, "small": small, "paper": paper}


def get_config(name: str) -> tuple[DiffAEConfig, TrainConfig]:
    """The preset `name` ("tiny" | "small" | "paper") as fresh ``(DiffAEConfig, TrainConfig)``.

    Raises:
        ValueError: for an unknown name (the message lists the choices).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
