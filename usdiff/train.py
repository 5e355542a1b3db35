"""Training a Diffusion Autoencoder: weight EMA, the Trainer, checkpoints and pretrained files.

A checkpoint ``out_dir/ckpt.pt`` holds everything needed to continue *exactly*: the model and EMA
weights, optimizer and AMP scaler state, the step, the position in the shuffled data and every
random-number generator. A pretrained file (:func:`save_pretrained`) holds only the config and the
EMA weights (fp16 by default), which is all that inference needs.
"""
from __future__ import annotations

import copy
import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from .model import DiffAE, DiffAEConfig, TrainConfig, get_config
from .model.io import apply_data_stats, load_model, read_checkpoint, save_model
from .utils import get_device, seed_everything

__all__ = ["CKPT_NAME", "EMA", "EpochSampler", "ShardSampler", "Trainer", "available_cpus", "cpu_has_fast_bf16",
           "dataset_images", "distributed_context", "load_model", "save_grid", "save_pretrained", "train",
           "training_dataset"]   # load_model is usdiff.model.io's, kept here beside save_pretrained

CKPT_NAME = "ckpt.pt"


class EMA:
    """Exponential moving average of a model's weights (Polyak averaging).

    After every optimizer step: ``shadow = decay * shadow + (1 - decay) * param``; buffers are copied.
    With `warmup` the decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after `n` updates, so a
    short run is not dominated by the random initial weights.

    Args:
        model: the model to average; a frozen copy of it becomes the shadow ``ema.model``.
        decay: target decay (0.9999 in the study).
        warmup: use the ramp above.
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.9999, warmup: bool = True):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0

    def current_decay(self) -> float:
        """The decay the next `update` will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights towards `model`'s."""
        decay = self.current_decay()
        for shadow, param in zip(self.model.parameters(), model.parameters()):
            shadow.lerp_(param.detach().to(shadow.dtype), 1.0 - decay)   # decay*shadow + (1-decay)*param
        shadows = dict(self.model.named_buffers())    # by name: a buffer set later (None before) shifts positions
        for name, buf in model.named_buffers():
            if name in shadows:
                shadows[name].copy_(buf)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite `model`'s weights with the shadow weights."""
        model.load_state_dict(self.model.state_dict())

    def to(self, device) -> EMA:
        self.model.to(device)
        return self

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.warmup, self.num_updates = state["decay"], state["warmup"], state["num_updates"]
        self.model.load_state_dict(state["shadow"])


class EpochSampler(Sampler):
    """Shuffled indices: a fresh permutation for every epoch, drawn from ``(seed, epoch)``.

    Because the order is a pure function of ``(seed, epoch)``, training can restart in the middle of
    an epoch: `start` skips the indices already used.
    """

    def __init__(self, n: int, *, seed: int, epoch: int = 0, start: int = 0):
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        yield from torch.randperm(self.n, generator=g)[self.start:].tolist()

    def __len__(self) -> int:
        return self.n - self.start


class ShardSampler(Sampler):
    """This process's part of every global batch of an :class:`EpochSampler` order.

    With `world` processes and `batch_size` images per process, global batch ``k`` is positions
    ``k * batch_size * world ...`` of the epoch's permutation and process `rank` loads the slice
    ``rank * batch_size ... (rank + 1) * batch_size`` of it. Together the processes see exactly
    the batches one process with ``batch_size * world`` would (what makes a distributed run match
    a single-process one at the same effective batch), and each loads only its own images.
    """

    def __init__(self, n: int, *, seed: int, epoch: int, start_batch: int, batch_size: int, rank: int, world: int):
        self.n, self.seed, self.epoch, self.start_batch = n, seed, epoch, start_batch
        self.batch_size, self.rank, self.world = batch_size, rank, world

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        global_bs = self.batch_size * self.world
        for k in range(self.start_batch, self.n // global_bs):
            lo = k * global_bs + self.rank * self.batch_size
            yield from perm[lo:lo + self.batch_size]

    def __len__(self) -> int:
        return max(0, self.n // (self.batch_size * self.world) - self.start_batch) * self.batch_size


def distributed_context(device: torch.device) -> tuple[int, int]:
    """``(rank, world_size)``; starts the process group when launched by ``torchrun`` (NCCL on CUDA,
    gloo on the CPU), ``(0, 1)`` otherwise."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's check for avx512_bf16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # macOS, Windows
        return os.cpu_count() or 1


class Trainer:
    """Trains a :class:`DiffAE` with the simple eps loss, EMA weights and exact resume.

    Args:
        model: the model to train (moved to `device`).
        dataset: yields ``(image (C, H, W) in [-1, 1], domain)`` or just images; the domain is unused,
            as in the study (sim and real simply concatenated).
        train_cfg: optimisation settings (default ``TrainConfig()``).
        out_dir: run folder for ``ckpt.pt`` and ``samples/step_XXXXXX.png``.
        device: torch device (default: CUDA when visible, else CPU).
        progress: show a tqdm bar with the loss.

    Attributes:
        step: optimizer steps taken; history: the loss of every step; ema: the :class:`EMA`.

    Raises:
        ValueError: if the data set has fewer images than one batch.
    """

    def __init__(self, model: DiffAE, dataset: Dataset, train_cfg: TrainConfig | None = None,
                 out_dir: str | Path = "runs/diffae", *, device=None, progress: bool = True):
        self.cfg = cfg = train_cfg or TrainConfig()
        if device is None and os.environ.get("LOCAL_RANK") is not None and torch.cuda.is_available():
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"   # one GPU per torchrun process
        self.device = get_device(device)
        self.rank, self.world_size = distributed_context(self.device)
        if len(dataset) < cfg.batch_size * self.world_size:
            raise ValueError(f"the data set has {len(dataset)} images, fewer than batch_size={cfg.batch_size}"
                             + (f" x {self.world_size} processes" if self.world_size > 1 else ""))
        self.model = model.to(self.device)
        self.ddp = None
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.dataset = dataset
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.ema = EMA(self.model, decay=cfg.ema_decay, warmup=cfg.ema_warmup)
        # the study: Adam without weight decay; AdamW when weight decay is asked for
        opt_cls = torch.optim.AdamW if cfg.weight_decay > 0 else torch.optim.Adam
        self.optimizer = opt_cls(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.amp = cfg.amp and self.device.type == "cuda"        # fp16 mixed precision on CUDA only
        if cfg.bf16_cpu and self.device.type == "cpu" and not cpu_has_fast_bf16():
            warnings.warn("bf16_cpu=True (--bf16) on a CPU without native bfloat16 instructions (avx512_bf16 / AMX): "
                          "bfloat16 is emulated there and a training step runs about 17x slower than in fp32; "
                          "leave --bf16 off on this machine", RuntimeWarning, stacklevel=2)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.noise_generator = torch.Generator().manual_seed(cfg.seed)   # t and eps of the loss
        self.steps_per_epoch = len(dataset) // (cfg.batch_size * self.world_size)
        self.num_workers = min(cfg.num_workers, available_cpus())   # e.g. the paper's 4 on a 2-CPU Colab
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[float] = []

    @property
    def total_steps(self) -> int:
        """Steps of a full run: ``total_steps``, else ``epochs`` x steps per epoch."""
        if self.cfg.total_steps is not None:
            return self.cfg.total_steps
        return self.cfg.epochs * self.steps_per_epoch

    @property
    def ckpt_path(self) -> Path:
        return self.out_dir / CKPT_NAME

    # ---- data ---------------------------------------------------------------------------------

    def _batches(self):
        """Endless batches from the current (epoch, batch) position; keeps that position up to date."""
        bs = self.cfg.batch_size
        while True:
            if self.world_size > 1:
                sampler = ShardSampler(len(self.dataset), seed=self.cfg.seed, epoch=self.epoch,
                                       start_batch=self.batch_in_epoch, batch_size=bs, rank=self.rank,
                                       world=self.world_size)
            else:
                sampler = EpochSampler(len(self.dataset), seed=self.cfg.seed, epoch=self.epoch,
                                       start=self.batch_in_epoch * bs)
            # a private generator keeps the DataLoader from drawing on the global RNG (dropout's)
            loader = DataLoader(self.dataset, batch_size=bs, sampler=sampler, drop_last=True,
                                num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                                generator=torch.Generator().manual_seed(0))
            for batch in loader:
                self.batch_in_epoch += 1
                if self.batch_in_epoch == self.steps_per_epoch:
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                yield batch[0] if isinstance(batch, (list, tuple)) else batch

    # ---- optimisation -------------------------------------------------------------------------

    def train_step(self, x0: torch.Tensor) -> float:
        """One optimizer step on a batch ``(B, C, H, W)``; returns the loss."""
        self.model.train()
        x0 = x0.to(self.device, non_blocking=True)
        cfg = self.cfg
        for group in self.optimizer.param_groups:   # linear warm-up, a function of the step (resumes exactly)
            group["lr"] = cfg.lr * min(1.0, (self.step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
        bf16 = cfg.bf16_cpu and self.device.type == "cpu"
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16 if bf16 else torch.float16,
                            enabled=self.amp or bf16):
            if self.ddp is None:
                loss = self.model.training_loss(x0, generator=self.noise_generator, weighting=cfg.loss_weighting,
                                                gamma=cfg.min_snr_gamma)
            else:   # t and noise of the whole global batch, as one process would draw them; this rank's part
                b, w = x0.shape[0], self.world_size
                t = torch.randint(0, self.model.num_timesteps, (b * w,), generator=self.noise_generator)
                noise = torch.randn((b * w, *x0.shape[1:]), generator=self.noise_generator)
                part = slice(self.rank * b, (self.rank + 1) * b)
                loss = self.ddp(x0, weighting=cfg.loss_weighting, gamma=cfg.min_snr_gamma, t=t[part],
                                noise=noise[part])
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model)
        self.step += 1
        if self.ddp is not None:   # the global batch's loss, the same on every process
            import torch.distributed as dist

            loss = loss.detach().clone()
            dist.all_reduce(loss)
            loss = loss / self.world_size
        loss = loss.item()
        self.history.append(loss)
        return loss

    def fit(self, steps: int | None = None) -> Trainer:
        """Train `steps` more steps (default: up to the config's total), then save a checkpoint.

        Every ``sample_every`` steps a reconstruction grid (EMA weights) goes to ``out_dir/samples``
        and every ``ckpt_every`` steps ``out_dir/ckpt.pt`` is rewritten.
        """
        steps = max(0, self.total_steps - self.step) if steps is None else steps
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        cfg = self.cfg
        self._ensure_data_stats()
        batches = self._batches()
        with tqdm(total=steps, desc="train", disable=not self.progress or self.rank != 0, dynamic_ncols=True) as bar:
            for _ in range(steps):
                self.train_step(next(batches))
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == 1:
                    recent = self.history[-cfg.log_every:]
                    bar.set_postfix(step=self.step, loss=f"{sum(recent) / len(recent):.4f}")
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.rank == 0:
                    self.save_samples()
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self.save()
        batches.close()
        self.save()
        return self

    # ---- samples ------------------------------------------------------------------------------

    def fixed_images(self, n: int = 8) -> torch.Tensor:
        """`n` data-set images spread over the data set, ``(n, C, H, W)``; the same every call."""
        idx = np.linspace(0, len(self.dataset) - 1, min(n, len(self.dataset))).round().astype(int)
        items = [self.dataset[int(i)] for i in idx]
        return torch.stack([it[0] if isinstance(it, (list, tuple)) else it for it in items])

    @torch.no_grad()
    def save_samples(self, n: int = 8, steps: int = 20) -> Path:
        """PNG grid with the EMA model: rows = inputs, reconstructions from (x_T, z_sem), random x_T.

        Uses private generators, so it does not disturb the training randomness.
        """
        model = self.ema.model
        x0 = self.fixed_images(n).to(self.device)
        z = model.encode(x0)
        recon = model.decode(model.encode_stochastic(x0, z, steps=steps), z, steps=steps)
        random_xT = model.sample(len(x0), z, steps=steps, generator=torch.Generator().manual_seed(0))
        return save_grid([x0, recon, random_xT], self.out_dir / "samples" / f"step_{self.step:06d}.png")

    # ---- checkpoints --------------------------------------------------------------------------

    def _ensure_data_stats(self) -> None:
        """Give the model and its EMA copy the training images' per-pixel statistics (for
        ``random_x_T(prior="data")``) unless they have them: a resumed checkpoint brings its own, so
        they are computed only when first needed, never read and then thrown away."""
        if self.model.data_mean is None:
            rng = _get_rng_state(self.noise_generator)   # reading the data must move no RNG (exact resume)
            self.model.set_data_stats(dataset_images(self.dataset))
            _set_rng_state(rng, self.noise_generator)
        if self.ema.model.data_mean is None:   # set together: EMA.update pairs the two models' buffers
            self.ema.model.data_mean = self.model.data_mean.clone()
            self.ema.model.data_std = self.model.data_std.clone()

    def state_dict(self) -> dict:
        self._ensure_data_stats()
        return {
            "config": self.model.config.to_dict(),
            "train_config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "data_position": {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch},
            "rng": _get_rng_state(self.noise_generator),
            "history": list(self.history),
            "data_stats": self.model.data_stats(),
        }

    def save(self, path: str | Path | None = None) -> Path:
        """Write the full training state (default ``out_dir/ckpt.pt``, replaced atomically).

        In a distributed run only process 0 writes; the others wait until the file is complete.
        """
        path = Path(path) if path is not None else self.ckpt_path
        if self.rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            torch.save(self.state_dict(), tmp)
            os.replace(tmp, path)
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        return path

    def resume(self, path: str | Path | None = None) -> Trainer:
        """Load a checkpoint written by `save` so that training continues exactly.

        Raises:
            FileNotFoundError: if `path` does not exist.
            ValueError: if the checkpoint's model config differs from this model's.
        """
        path = Path(path) if path is not None else self.ckpt_path
        ckpt = read_checkpoint(path)
        saved = DiffAEConfig.from_dict(ckpt["config"])
        if saved != self.model.config:
            diff = {k: (v, getattr(self.model.config, k)) for k, v in saved.to_dict().items()
                    if getattr(self.model.config, k) != v}
            raise ValueError(f"checkpoint {path} was trained with another model config: {diff} (saved, ours)")
        self.model.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step = ckpt["step"]
        self.epoch = ckpt["data_position"]["epoch"]
        self.batch_in_epoch = ckpt["data_position"]["batch_in_epoch"]
        self.history = list(ckpt["history"])
        apply_data_stats(self.model, ckpt)
        apply_data_stats(self.ema.model, ckpt)
        _set_rng_state(ckpt["rng"], self.noise_generator)
        return self


def _get_rng_state(noise_generator: torch.Generator) -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
        "python": random.getstate(),
        "noise": noise_generator.get_state(),
    }


def _set_rng_state(state: dict, noise_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    noise_generator.set_state(state["noise"])


def save_grid(rows: list[torch.Tensor], path: str | Path) -> Path:
    """Save equally long batches ``(B, 1, H, W)`` in [-1, 1] as the rows of one PNG (2 px gaps)."""
    from PIL import Image

    rows = [r.detach().float().cpu().clamp(-1, 1) for r in rows]
    b, _, h, w = rows[0].shape
    pad = 2
    canvas = torch.ones(len(rows) * (h + pad) - pad, b * (w + pad) - pad)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            canvas[i * (h + pad): i * (h + pad) + h, j * (w + pad): j * (w + pad) + w] = im[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(((canvas + 1) * 127.5).round().byte().numpy(), mode="L").save(path)
    return path


# ---- sharing models (checkpoint reading and writing: usdiff.model.io) -----------------------------

def dataset_images(dataset, n: int = 2048) -> torch.Tensor:
    """Up to `n` images ``(n, C, H, W)`` evenly spaced through `dataset` (deterministic), e.g. for
    :meth:`DiffAE.set_data_stats`."""
    if len(dataset) < 2:
        raise ValueError(f"dataset must hold at least 2 images, got {len(dataset)}")
    idx = np.unique(np.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().astype(int))
    items = [dataset[int(i)] for i in idx]
    return torch.stack([it[0] if isinstance(it, (list, tuple)) else it for it in items])


def save_pretrained(model_or_trainer, path: str | Path, half: bool = True) -> Path:
    """Write a small file with the model config and weights only (the EMA weights of a Trainer);
    :func:`usdiff.model.io.save_model` for a Trainer, an :class:`EMA` or a :class:`DiffAE`.

    Args:
        model_or_trainer: a :class:`Trainer` (its EMA weights), an :class:`EMA` or a :class:`DiffAE`.
        path: output file, e.g. ``assets/diffae_tiny.pt``.
        half: store floating-point weights as fp16 (half the size; loaded back as fp32).
    """
    step = None
    if isinstance(model_or_trainer, Trainer):
        model_or_trainer._ensure_data_stats()
        model, step = model_or_trainer.ema.model, model_or_trainer.step
    elif isinstance(model_or_trainer, EMA):
        model = model_or_trainer.model
    else:
        model = model_or_trainer
    if not isinstance(model, DiffAE) or model.config is None:
        raise TypeError(f"expected a Trainer, EMA or DiffAE built from a config, got {type(model_or_trainer).__name__}")
    return save_model(model, path, step=step, half=half)


def training_dataset(data_dir: str | Path, size: int, fit: str = "pad"):
    """What ``usdiff train --data`` reads: the train split of a built-in data set (a folder with
    ``manifest.json``), or all images of your own ``ROOT/sim`` and ``ROOT/real`` folders.

    Raises:
        FileNotFoundError: the folder is neither (the message says what it must hold).
    """
    from .data import BuiltinDataset, TwoDomainDataset

    root = Path(data_dir)
    if (root / "manifest.json").is_file():
        return BuiltinDataset(root, split="train", domain="both", size=size)
    if (root / "sim").is_dir() and (root / "real").is_dir():
        return TwoDomainDataset(root, size=size, fit=fit)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    raise FileNotFoundError(f"{root} holds neither a built-in data set (manifest.json; see `usdiff data generate`) "
                            "nor your own images in the folders sim/ and real/")


START_MODES = ("new", "resume", "overwrite")


def train(config: str | tuple[DiffAEConfig, TrainConfig] = "tiny", data_dir: str | Path = "data/builtin",
          out_dir: str | Path = "runs/diffae", *, start: str = "new", steps: int | None = None, device=None,
          fit: str = "pad", progress: bool = True, **train_overrides) -> Trainer:
    """Train a DiffAE on the built-in data set (both domains, train split) or on your own
    ``ROOT/sim`` + ``ROOT/real`` images; used by ``usdiff train``.

    Args:
        config: preset name ("tiny" | "small" | "paper") or a ``(DiffAEConfig, TrainConfig)`` pair
            (change model fields with ``dataclasses.replace`` on the preset's, e.g. ``prediction="v"``).
        data_dir: built-in data set folder (see ``usdiff data``) or a folder with ``sim/`` and ``real/``.
        out_dir: run folder; the checkpoint is ``out_dir/ckpt.pt``.
        start: ``"new"`` (refused when `out_dir` holds a checkpoint), ``"resume"`` (continue exactly
            from ``out_dir/ckpt.pt``) or ``"overwrite"`` (start afresh; the checkpoint is replaced).
        steps: the total step count to train to (not a number of extra steps): a run resumed at
            step 2,000 with ``steps=3000`` trains 1,000 more (default: the config's total).
        device: torch device (default: CUDA when visible, else CPU).
        fit: how your own images of other sizes reach the model's (``"pad"`` or ``"crop"``).
        progress: show a tqdm bar.
        train_overrides: :class:`TrainConfig` fields to change (e.g. ``seed=1``,
            ``loss_weighting="min_snr"``, ``warmup_steps=200``, ``bf16_cpu=True``); unknown names raise
            ``TypeError``.

    Raises:
        ValueError: an unknown `start`.
        FileNotFoundError: ``start="resume"`` and there is no checkpoint in `out_dir`.
        FileExistsError: `out_dir` holds a checkpoint and ``start="new"``.
    """
    import dataclasses

    if start not in START_MODES:
        raise ValueError(f"start must be one of {START_MODES}, got {start!r}")
    model_cfg, train_cfg = get_config(config) if isinstance(config, str) else config
    if train_overrides:
        train_cfg = dataclasses.replace(train_cfg, **train_overrides)
    existing = Path(out_dir) / "ckpt.pt"
    if existing.exists() and start == "new":
        raise FileExistsError(f"{existing} exists: pass start='resume' (CLI --resume) to continue that run, "
                              "start='overwrite' (--overwrite) to start afresh (it is replaced), or choose another "
                              "out_dir (--out)")
    seed_everything(train_cfg.seed)
    dataset = training_dataset(data_dir, model_cfg.image_size, fit)
    model = DiffAE.from_config(model_cfg)
    trainer = Trainer(model, dataset, train_cfg, out_dir, device=device, progress=progress)
    if start == "resume":
        trainer.resume(trainer.ckpt_path)
    target = trainer.total_steps if steps is None else steps
    trainer.fit(max(0, target - trainer.step))
    return trainer
