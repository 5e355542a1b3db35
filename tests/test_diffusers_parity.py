"""Parity of :class:`usdiff.model.DDIMScheduler` with diffusers' ``DDIMScheduler`` and
``DDIMInverseScheduler``.

Wherever the two define the same quantity, the tests compare the numbers the two independent
implementations compute (float64, random inputs from seeded generators, relative tolerance 1e-10):
the linear schedule (diffusers' ``beta_schedule="linear"``, same beta_start / beta_end), the cosine
schedule (diffusers' ``"squaredcos_cap_v2"``), our betas passed as diffusers' ``trained_betas``,
our ``zero_terminal_snr=True`` against diffusers' ``rescale_betas_zero_snr=True``, the "trailing"
and "leading" grids (diffusers' ``timestep_spacing``), the deterministic (eta = 0) and the stochastic
step, x_0 from eps and from v, ``add_noise`` and the v target, and the inversion step.

The diffusers settings that make the two definitions meet:

* ``clip_sample=False``: diffusers' default clamps the predicted x_0 to [-1, 1]; ours only does with
  ``clip_x0=True``.
* ``thresholding=False``: dynamic thresholding (Imagen) has no counterpart here.
* ``steps_offset=0``: diffusers adds it to the "leading" grid (Stable Diffusion's configs use 1); ours
  has no offset.
* ``set_alpha_to_one=True``: after the last step diffusers uses ``final_alpha_cumprod`` (inverse:
  ``initial_alpha_cumprod`` before the first one); True makes it 1.0, which is our ``t = -1``
  (alpha_bar = 1, the clean image). False makes it ``alphas_cumprod[0]``, our ``t = 0``.
* ``prediction_type`` "epsilon" / "v_prediction" are our ``prediction`` "eps" / "v".

Precision: diffusers builds its betas in float32 (``torch.tensor(trained_betas, dtype=torch.float32)``,
``torch.linspace(..., dtype=torch.float32)``), ours in float64. :func:`diffusers_f64` runs diffusers'
own constructor with ``torch.float32`` resolving to float64 in its module, so that all of diffusers'
schedule code (linspace, squaredcos betas, rescale, cumprod) runs in float64 and the update formulas
can be compared at 1e-10; :func:`test_shipped_float32_schedule_agrees_to_float32_precision` checks
the unpatched float32 build to float32 precision.

Where they differ (each test that touches a difference says which):

1. Step bookkeeping. diffusers' ``step(model_output, t, sample)`` derives the previous timestep as
   ``t - T // n`` (n from ``set_timesteps``; ``final_alpha_cumprod`` when negative). Ours takes
   ``t_prev`` explicitly, and our sampling loop passes the next grid point (-1 after the last). The
   two coincide when the grid's stride is T // n everywhere: diffusers' "leading" grid always,
   "trailing" when n divides T. For "trailing" with n not dividing T (T = 1000, n = 7: grid 999, 856,
   713, 570, 428, 285, 142) diffusers steps to alpha_bar at 857, 714, 571, 428, 286, 143 and 0
   instead of the next grid point 856, 713, 570, 428, 285, 142 and -1: the next model call (at the
   next grid point) sees a sample noised to a neighbouring timestep, and the chain ends at
   alpha_bar[0] (the noise level of t = 0), not at the clean image. The update formula itself is the
   same: the tests give our step diffusers' t_prev and compare.
2. "leading" grid: ours is ``floor(k T / n)``, diffusers' ``k (T // n) + steps_offset``, k = 0..n-1.
   They agree iff ``T % n`` is 0 or 1; otherwise ours is larger by exactly ``floor(k (T % n) / n)``
   (n = 7: ours 857, 714, ..., 0; diffusers 852, 710, ..., 0); ours computes the floor in integers.
3. "trailing" grid: both ``round(T - k T / n) - 1``; they agree for n = 7 and 30 and for most step
   counts (889 of 1..1000 at T = 1000). Two float artefacts make the rest differ: where
   ``T - k T / n`` is an exact half-integer (n = 48: 937.5), numpy's ``arange`` with a float step and
   our ``T - k * (T / n)`` round the tie to different sides (off by one at those k); and for some n
   (61, 103, ...) ``np.arange(T, 0, -T / n)`` yields n + 1 points, the last of them timestep -1
   (diffusers' ``step`` then reads ``alphas_cumprod[-1]``, the noisiest value).
4. diffusers' "linspace" spacing has no counterpart here.
5. Zero terminal SNR with eps prediction: ours refuses it (x_0 = (x - eps) / 0 at T - 1); diffusers
   accepts it and returns non-finite values at T - 1.
6. Clipping: diffusers' ``clip_sample`` clamps x_0 but keeps the model's eps unless
   ``use_clipped_model_output=True``; our ``clip_x0=True`` always re-derives eps from the clamped x_0.
7. Inversion. diffusers' ``DDIMInverseScheduler.step(model_output, t, sample)`` steps *to* t from
   ``min(t - T // n, T - 1)`` (``initial_alpha_cumprod`` when that is negative: 1.0, our t = -1, with
   ``set_alpha_to_one=True``; ``alphas_cumprod[0]``, our t = 0, with False); our
   ``inverse_step(model_output, t, t_next, x)`` steps from t to an explicit t_next. Both read the
   model output as the one at the current (lower) timestep, and the updates agree for eps and v
   (diffusers' inversion pipelines, e.g. DiffEdit's, pass it the network's output at (x, target t);
   our ``DiffAE`` evaluates it at (x, t)). Its
   grid is diffusers' forward grid ascending, so differences 1-3 carry over (n = 7 trailing: its first
   step starts from alpha_bar[0], not the clean image). Our ``exact_inverse_step`` reads the model
   output at (x_next, t_next) and solves the deterministic step for x_next; for eps that is the same
   update, for v diffusers has no counterpart (its inverse step is not the inverse of its step for
   v), so it is checked against diffusers' forward step.
8. eta > 0: the same sigma (DDIM eq. 16); diffusers takes the noise as ``variance_noise``, ours draws
   it with ``torch.randn(shape, generator=..., dtype=...)``.
"""
from __future__ import annotations

import sys
from contextlib import ExitStack
from unittest import mock

import pytest
import torch

from usdiff.model import DDIMScheduler, get_schedule

diffusers = pytest.importorskip("diffusers")

T = 1000
SHAPE = (2, 3, 8, 8)
RTOL, ATOL = 1e-10, 1e-12          # float64, same formulas
PRED = {"eps": "epsilon", "v": "v_prediction"}


class _Float64Torch:
    """``torch`` as diffusers' scheduler modules see it inside :func:`diffusers_f64`: float32 is float64."""

    float32 = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


def diffusers_f64(cls=None, **config):
    """A diffusers scheduler (`cls`, default ``DDIMScheduler``) built in float64 with the settings
    that make it comparable with ours; `config` adds to or overrides them."""
    cls = cls or diffusers.DDIMScheduler
    config = {
        "num_train_timesteps": T,
        "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,  # our linear_beta_schedule's range
        "clip_sample": False,      # the default True clamps x_0 to [-1, 1]; ours does only with clip_x0=True
        "set_alpha_to_one": True,  # alpha_bar = 1 past the last step (inverse: before the first): our t = -1
        "steps_offset": 0,         # ours has no offset on the "leading" grid
        **config,
    }
    if cls is diffusers.DDIMScheduler:
        config.setdefault("thresholding", False)  # dynamic thresholding: no counterpart in ours
    with ExitStack() as stack:  # diffusers' own schedule code, run in float64
        for mod in {sys.modules[c.__module__] for c in (diffusers.DDIMScheduler, diffusers.DDIMInverseScheduler)}:
            stack.enter_context(mock.patch.object(mod, "torch", _Float64Torch()))
        sched = cls(**config)
    assert sched.alphas_cumprod.dtype == torch.float64, "diffusers' schedule was not built in float64"
    return sched


DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def pair(schedule="linear", prediction="eps", zero_snr=False, spacing="leading", cls=None, **config):
    """Our scheduler and diffusers' (`cls`) for the same schedule, prediction and spacing."""
    ours = DDIMScheduler(schedule, T, prediction=prediction, zero_terminal_snr=zero_snr, spacing=spacing)
    theirs = diffusers_f64(cls, beta_schedule=DIFFUSERS_SCHEDULE[schedule], prediction_type=PRED[prediction],
                           rescale_betas_zero_snr=zero_snr, timestep_spacing=spacing, **config)
    return ours, theirs


def our_step(ours: DDIMScheduler, *args, **kwargs) -> torch.Tensor:
    """x_{t_prev} of our ``step`` (a tensor, or the ``prev_sample`` of the result where it has one)."""
    out = ours.step(*args, **kwargs)
    return getattr(out, "prev_sample", out)


def our_grid(ours: DDIMScheduler, n: int) -> list[int]:
    return ours.set_timesteps(n).tolist()


def rand(seed: int, shape=SHAPE) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def close(actual, expected, rtol=RTOL, atol=ATOL):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def diffusers_prev(t: int, n: int) -> int:
    """The timestep diffusers' step goes to from `t` (difference 1), as our t_prev (-1 = alpha_bar 1)."""
    return max(t - T // n, -1)


# (prediction, zero terminal SNR): zero SNR needs v in ours (difference 5)
PREDICTIONS = [("eps", False), ("v", False), ("v", True)]
STEP_CASES = [(p, z, sp, n) for p, z in PREDICTIONS for sp in ("leading", "trailing") for n in (20, 7, 30)]


# ---- schedules --------------------------------------------------------------------------------


@pytest.mark.parametrize("zero_snr", [False, True])
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_named_schedule_matches(name, zero_snr):
    """Our "linear" is diffusers' "linear" (1e-4 .. 0.02), our "cosine" its "squaredcos_cap_v2"
    (Nichol & Dhariwal, s = 0.008, max_beta = 0.999); zero_terminal_snr is rescale_betas_zero_snr."""
    ours, theirs = pair(name, "v", zero_snr)
    close(ours.betas, theirs.betas)
    close(ours.alphas_cumprod, theirs.alphas_cumprod)
    if zero_snr:
        assert theirs.alphas_cumprod[-1] == 0 and ours.alphas_cumprod[-1] == 0


@pytest.mark.parametrize("zero_snr", [False, True])
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_trained_betas_give_the_same_alphas_cumprod(name, zero_snr):
    betas = get_schedule(name, T)
    ours = DDIMScheduler(betas, prediction="v", zero_terminal_snr=zero_snr)
    theirs = diffusers_f64(trained_betas=betas.numpy(), rescale_betas_zero_snr=zero_snr)
    close(ours.betas, theirs.betas)
    close(ours.alphas_cumprod, theirs.alphas_cumprod)


@pytest.mark.parametrize("zero_snr", [False, True])
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_shipped_float32_schedule_agrees_to_float32_precision(name, zero_snr):
    """diffusers as shipped (float32 betas, float32 cumprod) against our float64 schedule."""
    theirs = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_SCHEDULE[name],
                                     beta_start=1e-4, beta_end=0.02, rescale_betas_zero_snr=zero_snr)
    assert theirs.alphas_cumprod.dtype == torch.float32
    ours = DDIMScheduler(name, T, prediction="v", zero_terminal_snr=zero_snr)
    close(theirs.alphas_cumprod.double(), ours.alphas_cumprod, rtol=2e-5, atol=1e-7)
    assert not torch.allclose(theirs.alphas_cumprod.double(), ours.alphas_cumprod, rtol=1e-10, atol=0)


# ---- timestep grids -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 20, 30, 50, 1000])
def test_trailing_grid_matches(n):
    ours, theirs = pair(spacing="trailing")
    theirs.set_timesteps(n)
    assert ours.set_timesteps(n).tolist() == theirs.timesteps.tolist()


def test_trailing_grid_differs_only_by_float_artefacts():
    """Difference 3, over every n in 1..T: off by one only where T - k T / n is an exact
    half-integer, and diffusers' extra last point -1 where np.arange overshoots."""
    ours, theirs = pair(spacing="trailing")
    ties_differ, extra = set(), set()
    for n in range(1, T + 1):
        a = ours.set_timesteps(n).tolist()
        theirs.set_timesteps(n)
        b = theirs.timesteps.tolist()
        if len(b) == n + 1:
            assert b[-1] == -1, (n, b[-3:])
            extra.add(n)
            b = b[:n]
        assert len(b) == n, n
        for k, (x, y) in enumerate(zip(a, b)):
            tie = (2 * k * T) % n == 0 and (2 * k * T // n) % 2 == 1   # T - kT/n = m + 1/2
            if tie:
                assert abs(x - y) <= 1, (n, k, x, y)
                if x != y:
                    ties_differ.add(n)
            else:
                assert x == y, (n, k, x, y)
    assert {61, 103} <= extra and 48 in ties_differ and not {7, 30} & (extra | ties_differ)
    theirs.set_timesteps(48)
    assert (ours.set_timesteps(48)[3].item(), theirs.timesteps[3].item()) == (937, 936)  # 1000 - 62.5 - 1


@pytest.mark.parametrize("n", [1, 10, 20, 50, 1000])
def test_leading_grid_matches_when_n_divides_T(n):
    ours, theirs = pair(spacing="leading")
    theirs.set_timesteps(n)
    assert ours.set_timesteps(n).tolist() == theirs.timesteps.tolist()


def test_leading_grid_offset_from_diffusers():
    """Difference 2, over every n in 1..T: ours floor(k T / n) (exact integers), diffusers k (T // n),
    so ours is larger by floor(k (T % n) / n); the two agree exactly where T % n is 0 or 1."""
    ours, theirs = pair(spacing="leading")
    for n in range(1, T + 1):
        theirs.set_timesteps(n)
        a, b = ours.set_timesteps(n).flip(0).tolist(), theirs.timesteps.flip(0).tolist()  # ascending
        for k, (x, y) in enumerate(zip(a, b)):
            assert x - y == k * (T % n) // n, (n, k, x, y)
        assert (a == b) == (T % n in (0, 1)), n
    theirs.set_timesteps(7)
    assert our_grid(ours, 7) == [857, 714, 571, 428, 285, 142, 0]
    assert theirs.timesteps.tolist() == [852, 710, 568, 426, 284, 142, 0]


@pytest.mark.parametrize("n", [38, 76])
def test_leading_grid_is_floor_k_T_over_n(n):
    """floor(k T / n) exactly, where a float product k * (T / n) would round an integer down
    (T = 1000, n = 38, k = 19: 500, not 499)."""
    ours, _ = pair(spacing="leading")
    assert our_grid(ours, n)[::-1] == [k * T // n for k in range(n)]


# ---- the DDIM step ------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize(("prediction", "zero_snr", "spacing", "n"), STEP_CASES)
def test_deterministic_step_matches(schedule, prediction, zero_snr, spacing, n):
    """eta = 0 step on diffusers' grid, with diffusers' t_prev = t - T // n (difference 1): the same
    x_{t_prev} and the same predicted x_0 (ours: ``split``)."""
    ours, theirs = pair(schedule, prediction, zero_snr, spacing)
    theirs.set_timesteps(n)
    for i, t in enumerate(theirs.timesteps.tolist()):
        x, out = rand(2 * i), rand(2 * i + 1)
        res = theirs.step(out, t, x, eta=0.0)
        mine = ours.step(out, t, diffusers_prev(t, n), x)
        close(getattr(mine, "prev_sample", mine), res.prev_sample)
        close(ours.split(out, t, x)[0], res.pred_original_sample)
        if hasattr(mine, "pred_original_sample"):
            close(mine.pred_original_sample, res.pred_original_sample)


def _model(x: torch.Tensor, t: int) -> torch.Tensor:
    """A fixed, smooth stand-in for the network."""
    return torch.tanh(x) * (0.5 + t / T) + 0.1 * torch.sin(3 * x + t / 100)


@pytest.mark.parametrize("prediction,zero_snr", PREDICTIONS)
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("n", [20, 50])
def test_sampling_loop_matches_when_n_divides_T(prediction, zero_snr, spacing, n):
    """Our loop (t_prev = next grid point, -1 last) is diffusers' loop when the stride is T // n."""
    ours, theirs = pair("cosine", prediction, zero_snr, spacing)
    grid = ours.set_timesteps(n).tolist()
    theirs.set_timesteps(n)
    assert theirs.timesteps.tolist() == grid
    x_ours = x_theirs = rand(0)
    for t, t_prev in zip(grid, grid[1:] + [-1]):
        x_ours = our_step(ours, _model(x_ours, t), t, t_prev, x_ours)
        x_theirs = theirs.step(_model(x_theirs, t), t, x_theirs).prev_sample
    close(x_ours, x_theirs)


def test_trailing_step_with_n_not_dividing_T_skips_past_the_grid():
    """Difference 1 at T = 1000, n = 7: the timestep diffusers' step lands on, found by matching
    its result against ours for every candidate t_prev, is t - 142, not the next grid point."""
    ours, theirs = pair("cosine", "v", True, "trailing")
    theirs.set_timesteps(7)
    grid = theirs.timesteps.tolist()
    assert grid == ours.set_timesteps(7).tolist() == [999, 856, 713, 570, 428, 285, 142]
    landed = []
    for i, t in enumerate(grid):
        x, out = rand(2 * i, (1, *SHAPE[1:])), rand(2 * i + 1, (1, *SHAPE[1:]))
        res = theirs.step(out, t, x).prev_sample
        cand = torch.arange(-1, t)                               # every t_prev < t at once
        mine = our_step(ours, out.expand(len(cand), *SHAPE[1:]), t, cand, x.expand(len(cand), *SHAPE[1:]))
        hit = ((mine - res).flatten(1).abs().amax(1) <= 1e-10 * res.abs().max()).nonzero().flatten()
        assert len(hit) == 1, (t, cand[hit].tolist())
        landed.append(int(cand[hit]))
    assert landed == [857, 714, 571, 428, 286, 143, 0]
    assert grid[1:] + [-1] == [856, 713, 570, 428, 285, 142, -1]     # where our loop goes


@pytest.mark.parametrize("spacing,n", [("trailing", 20), ("leading", 7)])
def test_set_alpha_to_one_false_is_our_t_prev_zero(spacing, n):
    """final_alpha_cumprod = alphas_cumprod[0] past the last step: our t_prev = 0 instead of -1."""
    ours, theirs = pair("linear", "eps", False, spacing, set_alpha_to_one=False)
    theirs.set_timesteps(n)
    t = theirs.timesteps[-1].item()
    assert t - T // n < 0
    x, out = rand(0), rand(1)
    res = theirs.step(out, t, x).prev_sample
    close(our_step(ours, out, t, 0, x), res)
    assert not torch.allclose(our_step(ours, out, t, -1, x), res, rtol=1e-6)


@pytest.mark.parametrize("eta", [0.5, 1.0])
@pytest.mark.parametrize("prediction,zero_snr", PREDICTIONS)
def test_stochastic_step_matches(prediction, zero_snr, eta):
    """Difference 8: the same noise passed as diffusers' variance_noise and drawn by ours."""
    ours, theirs = pair("cosine", prediction, zero_snr, "trailing")
    n = 10
    theirs.set_timesteps(n)
    for i, t in enumerate(theirs.timesteps.tolist()):
        x, out, seed = rand(2 * i), rand(2 * i + 1), 1000 + i
        res = theirs.step(out, t, x, eta=eta, variance_noise=rand(seed)).prev_sample
        mine = our_step(ours, out, t, diffusers_prev(t, n), x, eta=eta, generator=torch.Generator().manual_seed(seed))
        close(mine, res)


def test_clipping_matches_use_clipped_model_output():
    """Difference 6: our clip_x0 is diffusers' clip_sample with use_clipped_model_output=True."""
    ours, theirs = pair("linear", "eps", clip_sample=True, clip_sample_range=1.0)
    theirs.set_timesteps(20)
    x, out, t = rand(0), rand(1), 950
    res = theirs.step(out, t, x, use_clipped_model_output=True)
    assert res.pred_original_sample.abs().max() == 1                  # x_0 was clipped
    close(our_step(ours, out, t, 900, x, clip_x0=True), res.prev_sample)
    kept = theirs.step(out, t, x, use_clipped_model_output=False).prev_sample
    assert not torch.allclose(our_step(ours, out, t, 900, x, clip_x0=True), kept, rtol=1e-3)


def test_zero_terminal_snr_with_eps():
    """Difference 5: ours refuses it, diffusers divides by sqrt(alpha_bar) = 0 at T - 1."""
    with pytest.raises(ValueError, match="prediction='v'"):
        DDIMScheduler("linear", T, prediction="eps", zero_terminal_snr=True)
    theirs = diffusers_f64(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="epsilon")
    theirs.set_timesteps(10)
    assert not torch.isfinite(theirs.step(rand(1), T - 1, rand(0)).prev_sample).all()


@pytest.mark.parametrize("prediction,zero_snr", PREDICTIONS)
def test_add_noise_and_v_target_match(prediction, zero_snr):
    ours, theirs = pair("cosine", prediction, zero_snr)
    x0, noise = rand(0), rand(1)
    t = torch.tensor([0, T - 1])
    close(ours.add_noise(x0, noise, t), theirs.add_noise(x0, noise, t))
    if prediction == "v":
        close(ours.target(x0, noise, t), theirs.get_velocity(x0, noise, t))


# ---- inversion ------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize(("prediction", "zero_snr", "spacing", "n"), STEP_CASES)
def test_inverse_step_matches_ddim_inverse_scheduler(schedule, prediction, zero_snr, spacing, n):
    """Difference 7: diffusers' inverse step to t_next starts at t_next - T // n (-1: alpha_bar 1);
    ours from an explicit t. The same x_{t_next} and predicted x_0; for eps exact_inverse_step too."""
    ours, inv = pair(schedule, prediction, zero_snr, spacing, cls=diffusers.DDIMInverseScheduler)
    inv.set_timesteps(n)
    if spacing == "trailing" or T % n in (0, 1):                         # the grids agree (2, 3)
        assert inv.timesteps.tolist() == ours.set_timesteps(n).flip(0).tolist()
    for i, t_next in enumerate(inv.timesteps.tolist()):
        t = diffusers_prev(t_next, n)
        x, out = rand(2 * i), rand(2 * i + 1)
        res = inv.step(out, t_next, x)
        close(ours.inverse_step(out, t, t_next, x), res.prev_sample)
        close(ours.split(out, t, x)[0], res.pred_original_sample)
        if prediction == "eps":
            close(ours.exact_inverse_step(out, t, t_next, x), res.prev_sample)


def test_inverse_grid_with_n_not_dividing_T_starts_at_alpha_bar_0():
    """Difference 7 at n = 7, trailing: diffusers' first inverse step (to 142) starts from
    alphas_cumprod[0] (142 - 142 = 0 >= 0), not from the clean image as ours does (t = -1)."""
    ours, inv = pair("cosine", "v", True, "trailing", cls=diffusers.DDIMInverseScheduler)
    inv.set_timesteps(7)
    assert inv.timesteps[0].item() == 142
    x, out = rand(0), rand(1)
    res = inv.step(out, 142, x).prev_sample
    close(ours.inverse_step(out, 0, 142, x), res)
    assert not torch.allclose(ours.inverse_step(out, -1, 142, x), res, rtol=1e-6)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_inverse_set_alpha_to_one_false_is_our_t_zero(spacing):
    """initial_alpha_cumprod = alphas_cumprod[0] before the first step: our t = 0 instead of -1."""
    ours, inv = pair("linear", "eps", False, spacing, cls=diffusers.DDIMInverseScheduler, set_alpha_to_one=False)
    inv.set_timesteps(20)
    t_next = inv.timesteps[0].item()
    assert t_next - T // 20 < 0
    x, out = rand(0), rand(1)
    close(ours.inverse_step(out, 0, t_next, x), inv.step(out, t_next, x).prev_sample)


@pytest.mark.parametrize("prediction,zero_snr", PREDICTIONS)
@pytest.mark.parametrize("spacing,n", [("leading", 20), ("trailing", 20), ("trailing", 7)])
def test_exact_inverse_step_inverts_diffusers_step(prediction, zero_snr, spacing, n):
    """Our exact_inverse_step (model output at x_next, t_next) is undone by diffusers' forward step.
    diffusers' inverse step is such an inverse for eps only: for v it reads v at the lower step."""
    ours, fwd = pair("cosine", prediction, zero_snr, spacing)
    inv = diffusers_f64(diffusers.DDIMInverseScheduler, beta_schedule="squaredcos_cap_v2",
                        prediction_type=PRED[prediction], rescale_betas_zero_snr=zero_snr, timestep_spacing=spacing)
    fwd.set_timesteps(n)
    inv.set_timesteps(n)
    for i, t_next in enumerate(fwd.timesteps.tolist()):
        t = diffusers_prev(t_next, n)
        x_t, out = rand(2 * i), rand(2 * i + 1)
        x_next = ours.exact_inverse_step(out, t, t_next, x_t)
        close(fwd.step(out, t_next, x_next).prev_sample, x_t, atol=1e-10)
        back = fwd.step(out, t_next, inv.step(out, t_next, x_t).prev_sample).prev_sample
        assert torch.allclose(back, x_t, rtol=1e-8, atol=1e-8) == (prediction == "eps"), t_next
