"""The Diffusion Autoencoder (Preechakul et al. 2022): semantic encoder + conditional DDIM.

An image x_0 is represented by two codes:

* ``z_sem = encoder(x_0)`` ``(B, z_dim)``: what the image shows (anatomy, style, domain);
* ``x_T`` ``(B, C, H, W)``: the stochastic details, found by running deterministic DDIM backwards
  from x_0 with the UNet conditioned on z_sem.

Decoding runs DDIM forwards from ``x_T`` conditioned on ``z_sem`` and gives back x_0.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..utils import check_positive_ints, exists
from .config import PREDICTION_CHOICES, DiffAEConfig
from .ddim import DDIMScheduler
from .encoder import SemanticEncoder
from .solvers import DPMSolverPP2M, check_solver
from .unet import ConditionalUNet


@contextmanager
def eval_mode(module: nn.Module):
    """Temporarily switch `module` to eval mode (no dropout), restoring its mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


class DiffAE(nn.Module):
    """Semantic encoder, conditional UNet and DDIM schedule.

    Args:
        encoder: image ``(B, C, H, W)`` -> ``(B, z_dim)``.
        unet: eps_theta(x_t ``(B, C, H, W)``, t ``(B,)``, z_sem ``(B, z_dim)``) (or v_theta, as the
            scheduler's ``prediction`` says).
        scheduler: the noise schedule and DDIM updates.
        config: the :class:`DiffAEConfig` the parts were built from (kept for checkpoints).
    """

    def __init__(self, *, encoder: nn.Module, unet: nn.Module, scheduler: DDIMScheduler,
                 config: DiffAEConfig | None = None):
        super().__init__()
        self.encoder = encoder
        self.unet = unet
        self.scheduler = scheduler
        self.config = config
        # alpha_bar_t as a (non-persistent) buffer, for plots and for users; the math uses float64
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.float(), persistent=False)
        # per-pixel mean and std of the training images (set_data_stats), for the "data" prior of x_T
        self.register_buffer("data_mean", None, persistent=False)
        self.register_buffer("data_std", None, persistent=False)

    @classmethod
    def from_config(cls, config: DiffAEConfig) -> DiffAE:
        """Build an untrained model from a :class:`DiffAEConfig`."""
        c = config
        common = dict(image_size=c.image_size, in_channels=c.in_channels, base_channels=c.base_channels,
                      attn_resolutions=c.attn_resolutions, dropout=c.dropout, z_dim=c.z_dim, num_heads=c.num_heads)
        encoder = SemanticEncoder(channel_mult=c.enc_channel_mult, num_res_blocks=c.enc_num_res_blocks, **common)
        unet = ConditionalUNet(channel_mult=c.channel_mult, num_res_blocks=c.num_res_blocks, **common)
        scheduler = DDIMScheduler(c.schedule, c.T, prediction=c.prediction, zero_terminal_snr=c.zero_terminal_snr,
                                  spacing=c.timestep_spacing)
        return cls(encoder=encoder, unet=unet, scheduler=scheduler, config=c)

    @property
    def num_timesteps(self) -> int:
        return self.scheduler.num_train_timesteps

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def fingerprint(self) -> str:
        """A short identity of the weights: the first 16 hex digits of the SHA-256 of every tensor of
        :meth:`state_dict` by name, floating-point ones rounded to float16 (the precision of a pretrained
        file), so a model, its training checkpoint and its ``save_pretrained`` file share one
        fingerprint; fitted translation methods record it."""
        h = hashlib.sha256()
        for name, value in sorted(self.state_dict().items()):
            t = value.detach().cpu()
            t = t.half() if t.is_floating_point() else t
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    # ---- validation ---------------------------------------------------------------------------

    def _check_images(self, x: torch.Tensor, name: str) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a (B, C, H, W) tensor, got {shape}")
        if exists(self.config):
            c, s = self.config.in_channels, self.config.image_size
            if x.shape[1] != c:
                raise ValueError(f"{name} must have {c} channel(s), got shape {tuple(x.shape)}")
            if x.shape[-2:] != (s, s):
                raise ValueError(f"{name} must be {s}x{s} pixels for this model, got shape {tuple(x.shape)}")

    def _check_z(self, z_sem: torch.Tensor, batch: int, name: str = "z_sem") -> None:
        if not isinstance(z_sem, torch.Tensor) or z_sem.ndim != 2:
            raise ValueError(f"{name} must be a (B, z_dim) tensor, got "
                             f"{tuple(z_sem.shape) if isinstance(z_sem, torch.Tensor) else type(z_sem).__name__}")
        if exists(self.config) and z_sem.shape[1] != self.config.z_dim:
            raise ValueError(f"{name} must have z_dim={self.config.z_dim} columns, got shape {tuple(z_sem.shape)}")
        if z_sem.shape[0] != batch:
            raise ValueError(f"{name} has {z_sem.shape[0]} rows but the images have batch size {batch}")

    # ---- training -----------------------------------------------------------------------------

    def training_loss(self, x0: torch.Tensor, generator: torch.Generator | None = None,
                      weighting: str = "uniform", gamma: float = 5.0, t: torch.Tensor | None = None,
                      noise: torch.Tensor | None = None) -> torch.Tensor:
        """DDPM loss ``w(t) || target - unet(x_t, t, encoder(x_0)) ||^2`` at uniform random t.

        The target is the noise eps (``prediction="eps"``, DDPM, DiffAE, the study) or the velocity
        ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` (``"v"``, Salimans & Ho 2022).

        ``weighting="uniform"`` is the simple loss of DDPM, upstream DiffAE and the study
        (``w = 1``; for v this is the "SNR + 1" weighting of Salimans & Ho in terms of x_0).
        ``"min_snr"`` is Min-SNR-gamma weighting (Hang et al., "Efficient Diffusion Training via
        Min-SNR Weighting Strategy", ICCV 2023): ``w(t) = min(SNR(t), gamma) / SNR(t)`` for eps and
        ``min(SNR(t), gamma) / (SNR(t) + 1)`` for v, with ``SNR(t) = abar_t / (1 - abar_t)``, which
        lowers the weight of the nearly clean steps (where x_t alone tells the image) and so
        shifts training towards the noisy ones, where only z_sem can.

        The encoder sees the clean x_0 and is trained end to end through this loss.

        Args:
            x0: ``(B, C, H, W)`` images in [-1, 1].
            generator: CPU generator for t and the noise (the global RNG when None).
            t, noise: given time steps ``(B,)`` and noise (drawn here when None; the distributed
                trainer draws them for the whole global batch and passes each process its part).

        Returns:
            scalar loss.
        """
        self._check_images(x0, "x0")
        b = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.num_timesteps, (b,), generator=generator)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator)
        t = t.to(x0.device)
        noise = noise.to(device=x0.device, dtype=x0.dtype)
        x_t = self.scheduler.add_noise(x0, noise, t)
        target = self.scheduler.target(x0, noise, t)
        z_sem = self.encoder(x0)
        per_image = (self.unet(x_t, t, z_sem).float() - target.float()).pow(2).flatten(1).mean(1)
        if weighting == "uniform":
            return per_image.mean()
        if weighting == "min_snr":
            w = min_snr_weights(self.scheduler.alphas_cumprod[t.cpu()], gamma, prediction=self.scheduler.prediction)
            return (w.to(per_image.device, torch.float32) * per_image).mean()
        raise ValueError(f"weighting must be 'uniform' or 'min_snr', got {weighting!r}")

    forward = training_loss

    # ---- inference ----------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        """Semantic code: ``(B, C, H, W)`` in [-1, 1] -> ``(B, z_dim)``."""
        self._check_images(x0, "x0")
        with eval_mode(self):
            return self.encoder(x0)

    @torch.no_grad()
    def encode_stochastic(self, x0: torch.Tensor, z_sem: torch.Tensor | None = None, steps: int = 100,
                          progress: bool = False, fixed_point_iters: int = 0,
                          tol: float = 1e-3, solver: str = "ddim") -> torch.Tensor:
        """Stochastic code x_T by deterministic DDIM inversion of `x0` conditioned on `z_sem`.

        Walks the `steps`-point DDIM grid upwards: x_0 -> x_{t_0} -> ... -> x_{t_last}, with
        ``t_last`` the grid's first sampling step (T - T/steps with "leading" spacing, T - 1 with
        "trailing"); decode with the same number of steps to get x_0 back.

        Plain inversion (``fixed_point_iters=0``, as in DDIM, DiffAE and the study) takes each step
        with the prediction evaluated at the *start* of the step, while decoding evaluates it at the other
        end; the mismatch is amplified where alpha_bar falls steeply (the last steps of the
        cosine schedule), so reconstructions get *worse* beyond ~100 steps there. With
        ``fixed_point_iters > 0`` every step is refined by fixed-point iteration until it is the
        exact inverse of the matching decoding step (``DDIMScheduler.exact_inverse_step`` with the
        prediction evaluated at x_next),
        each image until its RMS change is below `tol` (converged images stop early, so an image gets
        the same refinement alone or in any batch).

        ``solver="dpmpp2m"`` walks the grid upwards with DPM-Solver++(2M) instead
        (:meth:`usdiff.model.solvers.DPMSolverPP2M.inverse_step`): the same network passes, a
        second-order solution of the ODE; it has no exact inverse to refine towards, so it takes no
        `fixed_point_iters`.

        Args:
            x0: ``(B, C, H, W)`` images in [-1, 1].
            z_sem: ``(B, z_dim)``; computed from `x0` when None.
            steps: DDIM steps.
            progress: show a tqdm bar.
            fixed_point_iters: at most this many refinements per step (0 = plain DDIM inversion;
                each costs one UNet evaluation; 5-10 make the inversion exact to ~60 dB).
            tol: stop refining an image at a step once it changes by less than this RMS.
            solver: "ddim" (default) or "dpmpp2m".

        Returns:
            ``(B, C, H, W)`` x_T.

        Raises:
            ValueError: for a negative `fixed_point_iters`, a non-positive `tol`, an unknown `solver`,
                or `fixed_point_iters` > 0 with "dpmpp2m".
        """
        self._check_images(x0, "x0")
        if not isinstance(fixed_point_iters, int) or fixed_point_iters < 0:
            raise ValueError(f"fixed_point_iters must be an int >= 0, got {fixed_point_iters!r}")
        if not tol > 0:
            raise ValueError(f"tol must be > 0, got {tol!r}")
        if check_solver(solver) != "ddim" and fixed_point_iters:
            raise ValueError(f"fixed_point_iters > 0 refines DDIM inversion to the exact inverse of DDIM decoding; "
                             f"solver={solver!r} has no such inverse: use fixed_point_iters=0 or solver='ddim'")
        inverse_step = self.scheduler.inverse_step if solver == "ddim" else DPMSolverPP2M(self.scheduler).inverse_step
        z_sem = self.encode(x0) if z_sem is None else z_sem
        self._check_z(z_sem, len(x0))
        timesteps = self.scheduler.set_timesteps(steps).flip(0).tolist()  # ascending: 0, T/steps, ...
        x = x0
        with eval_mode(self):
            for t, t_next in tqdm(zip([-1] + timesteps[:-1], timesteps), total=steps, desc="encode",
                                  disable=not progress, leave=False):
                # the prediction at the current point; the clean image (t=-1) is evaluated at t=0
                out = self.unet(x, self._t(t, x), z_sem)
                x_next = inverse_step(out, t, t_next, x)
                active = torch.arange(len(x), device=x.device)     # images still being refined
                for _ in range(fixed_point_iters):
                    x_a = x_next[active]
                    out = self.unet(x_a, self._t(t_next, x_a), z_sem[active])  # where decoding evaluates it
                    refined = self.scheduler.exact_inverse_step(out, t, t_next, x[active])
                    change = (refined - x_a).flatten(1).pow(2).mean(1).sqrt()
                    x_next[active] = refined
                    active = active[change >= tol]
                    if len(active) == 0:
                        break
                x = x_next
        return x

    @staticmethod
    def _t(t: int, like: torch.Tensor) -> torch.Tensor:
        """Timestep `t` (-1 = clean image, evaluated at 0) as a ``(B,)`` long tensor for the UNet."""
        return torch.full((len(like),), max(t, 0), device=like.device, dtype=torch.long)

    @torch.no_grad()
    def denoise(self, x_t: torch.Tensor, z_sem: torch.Tensor, timesteps: Sequence[int], *, eta: float = 0.0,
                generator: torch.Generator | None = None, guidance: Callable | None = None,
                on_step: Callable | None = None, progress: bool = False) -> torch.Tensor:
        """The DDIM sampling loop: from `x_t` at ``timesteps[0]`` down to x_0, conditioned on `z_sem`.

        Every decoder of the package runs this loop (:meth:`decode`, :meth:`decode_trajectory`,
        SDEdit and its guided variant); they differ only in where they start and in the two hooks.

        Args:
            x_t: ``(B, C, H, W)`` the sample at ``timesteps[0]``.
            z_sem: ``(B, z_dim)`` semantic code.
            timesteps: the descending grid to visit (e.g. ``scheduler.set_timesteps(n)`` or its tail);
                after the last one the loop steps to x_0 (``t_prev = -1``).
            eta: 0 = deterministic DDIM; > 0 adds fresh noise from `generator` at every step.
            guidance: ``guidance(x_t, t, model_output) -> model_output`` replaces the network's output
                before the update (e.g. classifier-style guidance); runs outside ``no_grad``.
            on_step: ``on_step(t_prev, x_prev, x0_hat) -> x_prev or None`` sees each update's result
                and may replace the next sample (e.g. the ILVR anchor); None keeps it.
            progress: show a tqdm bar.

        Returns:
            ``(B, C, H, W)`` x_0, not clamped.
        """
        self._check_images(x_t, "x_t")
        self._check_z(z_sem, len(x_t))
        timesteps = [int(t) for t in timesteps]
        if not timesteps or any(a <= b for a, b in zip(timesteps, timesteps[1:])):
            raise ValueError(f"timesteps must be a non-empty descending sequence, got {timesteps}")
        x = x_t
        with eval_mode(self):
            for t, t_prev in tqdm(list(zip(timesteps, timesteps[1:] + [-1])), desc="decode", disable=not progress,
                                  leave=False):
                out = self.unet(x, self._t(t, x), z_sem)
                if guidance is not None:
                    with torch.enable_grad():
                        out = guidance(x, t, out)
                x_prev, x0 = self.scheduler.step(out, t, t_prev, x, eta=eta, generator=generator)
                if on_step is not None:
                    replaced = on_step(t_prev, x_prev, x0)
                    x_prev = x_prev if replaced is None else replaced
                x = x_prev
        return x

    def decode(self, x_T: torch.Tensor, z_sem: torch.Tensor, steps: int = 20, eta: float = 0.0,
               progress: bool = False, generator: torch.Generator | None = None,
               solver: str = "ddim") -> torch.Tensor:
        """Images from ``(x_T, z_sem)`` by sampling over the `steps`-point grid (:meth:`denoise`).

        Args:
            x_T: ``(B, C, H, W)`` stochastic code (from `encode_stochastic`, or Gaussian noise).
            z_sem: ``(B, z_dim)`` semantic code.
            steps: sampling steps = network passes (the study evaluated DDIM with 20).
            eta: 0 = deterministic DDIM; > 0 adds fresh noise at every step (DDIM only).
            progress: show a tqdm bar.
            generator: CPU generator for the noise when ``eta > 0``.
            solver: "ddim" (default, DDIM) or "dpmpp2m" (DPM-Solver++(2M), Lu et al. 2022: second
                order, the same network passes; :class:`usdiff.model.solvers.DPMSolverPP2M`).

        Returns:
            ``(B, C, H, W)`` images clamped to [-1, 1].

        Raises:
            ValueError: for an unknown `solver`, or ``eta > 0`` with "dpmpp2m".
        """
        self._check_images(x_T, "x_T")
        self._check_z(z_sem, len(x_T))
        grid = self.scheduler.set_timesteps(steps).tolist()  # descending: ..., T/steps, 0
        if check_solver(solver) == "ddim":
            return self.denoise(x_T, z_sem, grid, eta=eta, generator=generator, progress=progress).clamp(-1, 1)
        if eta != 0:
            raise ValueError(f"solver={solver!r} is deterministic (eta=0); eta={eta!r} needs solver='ddim'")
        hook = DPMSolverPP2M(self.scheduler).on_step(grid)   # DDIM's loop, each update made second order
        return self.denoise(x_T, z_sem, grid, on_step=hook, progress=progress).clamp(-1, 1)

    def decode_trajectory(self, x_T: torch.Tensor, z_sem: torch.Tensor, steps: int = 20) -> dict:
        """:meth:`decode` (deterministic, eta = 0) that keeps every step, to see how an image forms.

        Returns:
            ``t`` ``(steps,)`` the timesteps visited (descending); ``x_t`` ``(steps + 1, B, C, H, W)``
            the states, from `x_T` to the output (not clamped); ``x0`` ``(steps, B, C, H, W)`` the
            prediction x0_hat made at each step (``DDIMStep.pred_original_sample``). The last state
            equals the last prediction: the final step lands on x0_hat.
        """
        self._check_images(x_T, "x_T")
        self._check_z(z_sem, len(x_T))
        grid = self.scheduler.set_timesteps(steps).tolist()
        states, preds = [x_T], []

        def keep(t_prev, x_prev, x0):
            states.append(x_prev)
            preds.append(x0)

        self.denoise(x_T, z_sem, grid, on_step=keep)
        return {"t": torch.tensor(grid), "x_t": torch.stack(states), "x0": torch.stack(preds)}

    @torch.no_grad()
    def reconstruct(self, x0: torch.Tensor, steps: int = 100, decode_steps: int | None = None,
                    progress: bool = False, fixed_point_iters: int = 0) -> torch.Tensor:
        """Encode `x0` to ``(x_T, z_sem)`` and decode it back: ``(B, C, H, W) -> (B, C, H, W)``.

        `fixed_point_iters` > 0 refines the inversion (see :meth:`encode_stochastic`).
        """
        z_sem = self.encode(x0)
        x_T = self.encode_stochastic(x0, z_sem, steps=steps, progress=progress,
                                     fixed_point_iters=fixed_point_iters)
        return self.decode(x_T, z_sem, steps=decode_steps or steps, progress=progress)

    # ---- the prior of x_T ---------------------------------------------------------------------

    @torch.no_grad()
    def set_data_stats(self, images: torch.Tensor) -> DiffAE:
        """Store the per-pixel mean and standard deviation of training `images` ``(N, C, H, W)`` in
        [-1, 1] (N >= 2), for ``random_x_T(prior="data")``. Saved with the model's checkpoints.

        Raises:
            ValueError: if `images` is not ``(N >= 2, C, H, W)`` at this model's size and channels.
        """
        images = torch.as_tensor(images)
        c = self.config
        want = (c.in_channels, c.image_size, c.image_size) if c is not None else tuple(images.shape[1:])
        if images.ndim != 4 or images.shape[0] < 2 or tuple(images.shape[1:]) != want:
            raise ValueError(f"images must be (N >= 2, {', '.join(map(str, want))}), got shape {tuple(images.shape)}")
        x = images.detach().double()
        self.data_mean = x.mean(0, keepdim=True).float().to(self.device)
        self.data_std = x.std(0, keepdim=True).float().to(self.device)
        return self

    def data_stats(self) -> dict | None:
        """``{"mean", "std"}`` (each ``(1, C, H, W)``, on the CPU) set by :meth:`set_data_stats`, or None."""
        if self.data_mean is None:
            return None
        return {"mean": self.data_mean.detach().cpu().clone(), "std": self.data_std.detach().cpu().clone()}

    def random_x_T(self, n: int, steps: int = 20, prior: str = "gaussian",
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """A random stochastic code for decoding with `steps` DDIM steps: ``(n, C, H, W)`` on the CPU.

        ``prior="gaussian"``: ``x_T ~ N(0, I)``, the convention of DDIM, DiffAE and the original study.

        ``prior="data"``: the Gaussian with the per-pixel mean and variance that x_t really has at
        the first timestep t_0 of the sampling grid,
        ``x_T = sqrt(abar_t0) * (m + s * e1) + sqrt(1 - abar_t0) * e2`` with m, s the per-pixel mean
        and std of the training images (:meth:`set_data_stats`) and e1, e2 ~ N(0, I). DDIM's
        "leading" grid starts at t_0 = T - T/steps (950 of 1000 for 20 steps), where the cosine
        schedule still keeps sqrt(abar) = 0.076 of the image: a model trained on such x_t reads the
        image's brightness and background from x_T's low frequencies, which N(0, I) sets to mid-grey.
        Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed" (WACV 2024) name
        this signal leak; Everaert et al., "Exploiting the Signal-Leak Bias in Diffusion Models"
        (WACV 2024) sample x_T with it. The statistics are of both domains together, so the prior
        says nothing about which domain to draw. A model with ``zero_terminal_snr`` and "trailing"
        steps starts at abar = 0, where both priors are N(0, I): there is no leak to imitate.

        Raises:
            ValueError: for an unknown `prior`, or ``"data"`` on a model without data statistics.
        """
        c = self.config
        shape = (n, c.in_channels, c.image_size, c.image_size)
        check_prior(prior)
        if prior == "gaussian":
            return torch.randn(shape, generator=generator)
        if self.data_mean is None:
            raise ValueError("prior='data' needs the training images' statistics, which this model does not "
                             "have: call model.set_data_stats(train_images) (checkpoints written by the Trainer "
                             "carry them; scripts/add_data_stats.py adds them to others), or use prior='gaussian'")
        t0 = int(self.scheduler.set_timesteps(steps)[0])
        ab = float(self.scheduler.alphas_cumprod[t0])
        e1, e2 = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
        mean, std = self.data_mean.cpu(), self.data_std.cpu()
        return ab ** 0.5 * (mean + std * e1) + (1.0 - ab) ** 0.5 * e2

    @torch.no_grad()
    def sample(self, n: int, z_sem: torch.Tensor | None = None, steps: int = 20,
               generator: torch.Generator | None = None, eta: float = 0.0, progress: bool = False,
               prior: str = "gaussian") -> torch.Tensor:
        """Decode `n` random ``x_T`` (:meth:`random_x_T` with `prior`) with the given semantic codes.

        A DiffAE has no prior over z_sem (upstream trains a separate latent DDIM for that), so
        `z_sem` is required: ``(n, z_dim)``, or ``(1, z_dim)`` to vary only the details of one image.

        Returns:
            ``(n, C, H, W)`` images in [-1, 1].

        Raises:
            ValueError: if `z_sem` is missing or its rows are neither 1 nor `n`.
        """
        if z_sem is None:
            raise ValueError("z_sem is required: this model has no prior over z_sem; "
                             "take it from images with model.encode(x0)")
        if z_sem.ndim == 2 and z_sem.shape[0] == 1 and n > 1:
            z_sem = z_sem.expand(n, -1)
        x_T = self.random_x_T(n, steps=steps, prior=prior, generator=generator)
        x_T = x_T.to(device=z_sem.device, dtype=z_sem.dtype)
        return self.decode(x_T, z_sem, steps=steps, eta=eta, generator=generator, progress=progress)

    def extra_repr(self) -> str:
        n_enc = sum(p.numel() for p in self.encoder.parameters())
        n_unet = sum(p.numel() for p in self.unet.parameters())
        return f"encoder={n_enc / 1e6:.2f}M params, unet={n_unet / 1e6:.2f}M params, T={self.num_timesteps}"


@dataclass(frozen=True)
class DDIMSteps:
    """DDIM steps of the inversion ``x -> x_T`` (`encode`) and of the decoding (`decode`), and the
    fixed-point refinement of every inversion step (:meth:`DiffAE.encode_stochastic`; 0 = plain DDIM).
    Decoding with as many steps as were used to encode inverts the encoding best."""

    encode: int = 100
    decode: int = 100
    fixed_point_iters: int = 0

    def __post_init__(self):
        check_positive_ints(encode=self.encode, decode=self.decode)
        if not isinstance(self.fixed_point_iters, int) or isinstance(self.fixed_point_iters, bool) \
                or self.fixed_point_iters < 0:
            raise ValueError(f"fixed_point_iters must be an int >= 0, got {self.fixed_point_iters!r}")


X_T_PRIORS = ("gaussian", "data")


def check_prior(prior: str) -> None:
    """Raise ValueError unless `prior` names a distribution of x_T (:meth:`DiffAE.random_x_T`)."""
    if prior not in X_T_PRIORS:
        raise ValueError(f"prior must be 'gaussian' or 'data', got {prior!r}")


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of `module`."""
    return sum(p.numel() for p in module.parameters())


def min_snr_weights(alphas_cumprod_t: torch.Tensor, gamma: float = 5.0, prediction: str = "eps") -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023) with ``SNR = abar / (1 - abar)``.

    The weight on the x_0 error is ``min(SNR, gamma)``; an eps loss already weighs it by SNR and a
    v loss by SNR + 1, so the weights are ``min(SNR, gamma) / SNR`` for eps (1 where SNR <= gamma,
    gamma / SNR above) and ``min(SNR, gamma) / (SNR + 1)`` for v.
    """
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    if prediction not in PREDICTION_CHOICES:
        raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
    ab = torch.as_tensor(alphas_cumprod_t, dtype=torch.float64)
    snr = ab / (1.0 - ab).clamp(min=1e-12)
    if prediction == "v":
        return torch.clamp(snr, max=gamma) / (snr + 1.0)
    return torch.clamp(snr, max=gamma) / snr.clamp(min=1e-12)
