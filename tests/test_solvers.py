"""DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) against closed forms.

The reference is the exact denoiser of Gaussian data x_0 ~ N(m, s^2 I) (as in test_vprediction):
x0_hat(x_t) = m + sqrt(a) s^2 (x_t - sqrt(a) m) / (a s^2 + 1 - a), and the probability-flow ODE keeps
the standardised value xi = (x_t - sqrt(a) m) / sqrt(a s^2 + 1 - a) of every pixel, so its exact
solution from (x, t) to t2 is sqrt(a2) m + sqrt(a2 s^2 + 1 - a2) xi (a = alpha_bar; a = 1 at t = -1).
"""
import dataclasses
import math

import pytest
import torch

from usdiff.model import (
    SOLVER_CHOICES,
    DDIMScheduler,
    DiffAE,
    DiffAEConfig,
    DPMSolverConfig,
    DPMSolverPP2M,
)

S = 0.5   # the data's standard deviation


def eps_leading():
    return DDIMScheduler("cosine")


def v_leading():
    return DDIMScheduler("cosine", prediction="v")


def v_zero_snr():
    return DDIMScheduler("cosine", prediction="v", zero_terminal_snr=True, spacing="trailing")


SCHEDULES = {"eps-leading": eps_leading, "v-leading": v_leading, "v-zero-snr-trailing": v_zero_snr}


def oracle(sched, x, t, m):
    """The exact network output (eps or v) at (x, t) for x_0 ~ N(m, S^2 I); finite at abar = 0 and 1."""
    a = sched.alpha_bar(t, x)
    d = a * S**2 + 1 - a
    eps = (1 - a).sqrt() * (x - a.sqrt() * m) / d
    if sched.prediction == "eps":
        return eps
    return a.sqrt() * eps - (1 - a).sqrt() * (a.sqrt() * S**2 * x + (1 - a) * m) / d


def exact(sched, x, t, t2, m):
    """The exact probability-flow ODE solution from (x, t) to t2."""
    a, a2 = sched.alpha_bar(t, x), sched.alpha_bar(t2, x)
    xi = (x - a.sqrt() * m) / (a * S**2 + 1 - a).sqrt()
    return a2.sqrt() * m + (a2 * S**2 + 1 - a2).sqrt() * xi


def problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    m = 0.5 * torch.tanh(torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64))
    x_T = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    x0 = m + S * torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    return m, x_T, x0


def solve(sched, grid, x, m, order=2, min_r=None):
    """Steps along the descending `grid` (its last entry is where it ends; -1 = x_0)."""
    solver = DPMSolverPP2M(sched, order=order) if min_r is None else DPMSolverPP2M(sched, order=order, min_r=min_r)
    for t, t_prev in zip(grid, grid[1:]):
        x = solver.step(oracle(sched, x, t, m), t, t_prev, x).prev_sample
    return x


def invert(sched, grid, x, m, order=2):
    """Steps up the ascending `grid` from x_0 (t = -1), with the model evaluated at each step's start."""
    solver = DPMSolverPP2M(sched, order=order)
    for t, t_next in zip([-1] + grid[:-1], grid):
        x = solver.inverse_step(oracle(sched, x, t, m), t, t_next, x)
    return x


def rms(x):
    return x.pow(2).mean().sqrt().item()


def decode_errors(sched, n, m, x_T):
    grid = sched.set_timesteps(n).tolist() + [-1]
    ref = exact(sched, x_T, grid[0], -1, m)
    return rms(solve(sched, grid, x_T, m, order=1) - ref), rms(solve(sched, grid, x_T, m) - ref)


# ---- (1) closer to the exact ODE solution than DDIM, and second order -------------------------------

@pytest.mark.parametrize("name", SCHEDULES)
def test_dpmpp2m_decodes_much_closer_to_the_exact_ode_solution_than_ddim(name):
    sched = SCHEDULES[name]()
    m, x_T, _ = problem()
    ddim10, dpm10 = decode_errors(sched, 10, m, x_T)
    ddim20, dpm20 = decode_errors(sched, 20, m, x_T)
    assert dpm20 < 0.1 * ddim20 and dpm20 < 2e-3          # measured: 0.014 (leading) and 0.04 (trailing) x DDIM
    assert dpm10 < 0.4 * ddim10                            # measured: 0.31 and 0.34
    assert 1.8 < ddim10 / ddim20 < 2.2                     # DDIM is first order: halves


@pytest.mark.parametrize("name, start, end", [("eps-leading", 900, 100), ("v-zero-snr-trailing", 999, 199)])
def test_error_falls_at_second_order_when_the_steps_double(name, start, end):
    # on an interval away from x_0: near the clean end the package's time-uniform grids take steps of
    # O(1) in lambda at any n (the cosine schedule's sigma ~ t + 8 there), which hides the order
    sched = SCHEDULES[name]()
    m, x_T, _ = problem(1)
    x = exact(sched, x_T, 999, start, m)
    ref = exact(sched, x, start, end, m)
    errs = {}
    for n in (20, 40, 80):
        grid = torch.linspace(start, end, n + 1).round().long().tolist()
        errs[n] = (rms(solve(sched, grid, x, m, order=1) - ref), rms(solve(sched, grid, x, m) - ref))
    for n in (20, 40):
        assert errs[n][1] / errs[2 * n][1] > 3             # second order: ~ 4x smaller
        assert 1.7 < errs[n][0] / errs[2 * n][0] < 2.3     # DDIM: ~ 2x
    assert errs[20][1] < 0.2 * errs[20][0]


def test_the_guard_keeps_the_leading_grids_last_jump_first_order():
    # the leading grid ends with a long step in lambda (50 -> 0 at 20 steps: h = 2.6 after 0.63);
    # Algorithm 2 without the guard overshoots there and ends farther from the exact solution than DDIM
    sched = eps_leading()
    m, x_T, _ = problem()
    grid = sched.set_timesteps(20).tolist() + [-1]
    ref = exact(sched, x_T, grid[0], -1, m)
    ddim = rms(solve(sched, grid, x_T, m, order=1) - ref)
    assert rms(solve(sched, grid, x_T, m, min_r=0.0) - ref) > ddim
    assert rms(solve(sched, grid, x_T, m) - ref) < 0.1 * ddim
    # on the trailing grid no step has r < 1/2, so the guard changes nothing there
    z = v_zero_snr()
    for n in (5, 10, 20, 50):
        g = z.set_timesteps(n).tolist() + [-1]
        assert torch.equal(solve(z, g, x_T, m), solve(z, g, x_T, m, min_r=0.0))


# ---- (2) the first-order steps are DDIM's, and the second-order step is Algorithm 2's ----------------

@pytest.mark.parametrize("name", SCHEDULES)
def test_first_order_steps_are_ddim_steps_exactly(name):
    sched = SCHEDULES[name]()
    m, x_T, _ = problem(2)
    grid = sched.set_timesteps(10).tolist()
    # a first step, and a whole trajectory with order=1: DDIMScheduler.step, bit for bit
    out = oracle(sched, x_T, grid[0], m)
    ours, ddim = DPMSolverPP2M(sched).step(out, grid[0], grid[1], x_T), sched.step(out, grid[0], grid[1], x_T)
    assert torch.equal(ours.prev_sample, ddim.prev_sample)
    assert torch.equal(ours.pred_original_sample, ddim.pred_original_sample)
    solver, x, x_ddim = DPMSolverPP2M(sched, order=1), x_T, x_T
    for t, t_prev in zip(grid, grid[1:] + [-1]):
        x = solver.step(oracle(sched, x, t, m), t, t_prev, x).prev_sample
        x_ddim = sched.step(oracle(sched, x_ddim, t, m), t, t_prev, x_ddim).prev_sample
    assert torch.equal(x, x_ddim)
    # the last step of a second-order trajectory, to x_0, is DDIM's too and lands on x0_hat exactly
    solver, x = DPMSolverPP2M(sched), x_T
    for t, t_prev in zip(grid[:-1], grid[1:]):
        x = solver.step(oracle(sched, x, t, m), t, t_prev, x).prev_sample
    out = oracle(sched, x, grid[-1], m)
    last = solver.step(out, grid[-1], -1, x)
    assert torch.equal(last.prev_sample, last.pred_original_sample)
    assert torch.equal(last.prev_sample, sched.step(out, grid[-1], -1, x).prev_sample)


def lam(sched, t):
    a = 1.0 if t < 0 else float(sched.alphas_cumprod[t])
    return 0.5 * math.log(a / (1 - a)), math.sqrt(a), math.sqrt(1 - a)


@pytest.mark.parametrize("name", SCHEDULES)
def test_updates_are_the_papers_equations(name):
    sched = SCHEDULES[name]()
    m, x_T, _ = problem(3)
    t2, t1, t0 = 700, 500, 300            # x_{t_{i-2}}, x_{t_{i-1}}, the next point t_i
    x2 = exact(sched, x_T, 999, t2, m) + 0.01 * x_T      # off the exact trajectory
    solver = DPMSolverPP2M(sched)
    first = solver.step(oracle(sched, x2, t2, m), t2, t1, x2)
    x1, d2 = first.prev_sample, first.pred_original_sample
    l2, _, s2 = lam(sched, t2)
    l1, a1, s1 = lam(sched, t1)
    l0, a0, s0 = lam(sched, t0)
    # DPM-Solver++1 (first step): x_{t_1} = (sigma_1 / sigma_0) x_{t_0} - alpha_1 (e^{-h_1} - 1) x_theta
    h1 = l1 - l2
    torch.testing.assert_close(x1, (s1 / s2) * x2 - a1 * math.expm1(-h1) * d2, atol=1e-12, rtol=0)
    # second-order step: r_i = h_{i-1} / h_i, D_i = (1 + 1/(2 r_i)) x_theta(t_{i-1}) - 1/(2 r_i) x_theta(t_{i-2})
    second = solver.step(oracle(sched, x1, t1, m), t1, t0, x1)
    d1 = second.pred_original_sample
    h = l0 - l1
    r = h1 / h
    D = (1 + 1 / (2 * r)) * d1 - 1 / (2 * r) * d2
    torch.testing.assert_close(second.prev_sample, (s0 / s1) * x1 - a0 * math.expm1(-h) * D, atol=1e-12, rtol=0)
    assert (second.prev_sample - sched.step(oracle(sched, x1, t1, m), t1, t0, x1).prev_sample).abs().max() > 1e-4
    # upwards (h < 0) the same equations
    inv = DPMSolverPP2M(sched)
    y1 = inv.inverse_step(oracle(sched, x1, t0, m), t0, t1, x1)
    y2 = inv.inverse_step(oracle(sched, y1, t1, m), t1, t2, y1)
    e0, e1 = sched.split(oracle(sched, x1, t0, m), t0, x1)[0], sched.split(oracle(sched, y1, t1, m), t1, y1)[0]
    hu, hu_last = l2 - l1, l1 - l0
    D = e1 + hu / (2 * hu_last) * (e1 - e0)
    torch.testing.assert_close(y2, (s2 / s1) * y1 - lam(sched, t2)[1] * math.expm1(-hu) * D, atol=1e-12, rtol=0)


# ---- (3) eps and v, zero terminal SNR ---------------------------------------------------------------

def test_zero_terminal_snr_start_is_exact_and_finite():
    sched = v_zero_snr()
    m, x_T, _ = problem(4)
    grid = sched.set_timesteps(20).tolist()
    assert grid[0] == 999 and float(sched.alphas_cumprod[999]) == 0.0
    solver = DPMSolverPP2M(sched)
    out = oracle(sched, x_T, 999, m)
    x1, x0_hat = solver.step(out, 999, grid[1], x_T)
    ab = float(sched.alphas_cumprod[grid[1]])
    # lambda = -inf: x0_hat = -v = m, eps_hat = x_T, x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next) x_T
    torch.testing.assert_close(x0_hat, -out, atol=0, rtol=0)
    torch.testing.assert_close(x0_hat, m, atol=1e-12, rtol=0)
    torch.testing.assert_close(x1, math.sqrt(ab) * m + math.sqrt(1 - ab) * x_T, atol=1e-12, rtol=0)
    # the next step has h_last = +inf, so 1 / (2 r) = 0: DDIM's update, exactly
    out1 = oracle(sched, x1, grid[1], m)
    assert torch.equal(solver.step(out1, grid[1], grid[2], x1).prev_sample, sched.step(out1, grid[1], grid[2], x1)[0])
    x = solve(sched, grid + [-1], x_T, m)
    assert torch.isfinite(x).all()
    assert rms(x - exact(sched, x_T, 999, -1, m)) < 2e-3
    # float32, as the models run: finite and as close
    x32 = solve(sched, grid + [-1], x_T.float(), m.float())
    assert torch.isfinite(x32).all() and rms(x32.double() - exact(sched, x_T, 999, -1, m)) < 2e-3


def test_eps_and_v_give_the_same_solution():
    m, x_T, _ = problem(5)
    e, v = eps_leading(), v_leading()
    grid = e.set_timesteps(15).tolist() + [-1]
    torch.testing.assert_close(solve(e, grid, x_T, m), solve(v, grid, x_T, m), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", SCHEDULES)
def test_inversion_is_closer_to_the_exact_ode_solution_than_ddim_inversion(name):
    sched = SCHEDULES[name]()
    m, _, x0 = problem(6)
    for n in (20, 40):
        grid = sched.set_timesteps(n).flip(0).tolist()
        ref = exact(sched, x0, -1, grid[-1], m)
        x_dpm, x_ddim = invert(sched, grid, x0, m), invert(sched, grid, x0, m, order=1)
        assert torch.isfinite(x_dpm).all()
        assert rms(x_dpm - ref) < 0.6 * rms(x_ddim - ref)          # measured 0.2-0.45
    # order 1 is DDIMScheduler.inverse_step exactly
    x, y, s = x0, x0, DPMSolverPP2M(sched, order=1)
    for t, t_next in zip([-1] + grid[:-1], grid):
        x, y = s.inverse_step(oracle(sched, x, t, m), t, t_next, x), sched.inverse_step(oracle(sched, y, t, m), t,
                                                                                      t_next, y)
    assert torch.equal(x, y)


def test_a_new_trajectory_starts_at_first_order_and_reset_forgets():
    sched = eps_leading()
    m, x_T, _ = problem(7)
    out = oracle(sched, x_T, 500, m)
    solver = DPMSolverPP2M(sched)
    solver.step(oracle(sched, x_T, 700, m), 700, 500, x_T)
    continued = solver.step(out, 500, 300, x_T).prev_sample        # t = the previous t_prev: second order
    assert not torch.equal(continued, sched.step(out, 500, 300, x_T).prev_sample)
    solver.step(oracle(sched, x_T, 700, m), 700, 500, x_T)
    assert torch.equal(solver.reset().step(out, 500, 300, x_T).prev_sample, sched.step(out, 500, 300, x_T)[0])
    solver.step(oracle(sched, x_T, 700, m), 700, 600, x_T)         # a step that does not end at 500
    assert torch.equal(solver.step(out, 500, 300, x_T).prev_sample, sched.step(out, 500, 300, x_T)[0])
    with pytest.raises(ValueError, match="order must be 1"):
        DPMSolverConfig(order=3)
    with pytest.raises(ValueError, match="min_r must be >= 0"):
        DPMSolverPP2M(sched, min_r=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        solver.config.order = 1                                     # frozen


# ---- (4) DiffAE.decode / encode_stochastic ----------------------------------------------------------

def tiny_model(prediction="eps", zero_snr=False, spacing="leading"):
    torch.manual_seed(0)
    cfg = DiffAEConfig(image_size=16, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                       z_dim=8, enc_channel_mult=(1, 2), T=1000, prediction=prediction, zero_terminal_snr=zero_snr,
                       timestep_spacing=spacing)
    model = DiffAE.from_config(cfg).eval()
    with torch.no_grad():                      # the UNet's last layer starts at zero: give it an output
        for p in model.unet.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    return model


@pytest.mark.parametrize("kind", [("eps", False, "leading"), ("v", True, "trailing")])
def test_decode_with_ddim_is_unchanged_and_dpmpp2m_is_the_solver_loop(kind):
    model = tiny_model(*kind)
    g = torch.Generator().manual_seed(8)
    x_T, x0 = torch.randn(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    z = model.encode(x0)
    grid = model.scheduler.set_timesteps(6).tolist()
    today = model.denoise(x_T, z, grid).clamp(-1, 1)                # decode's body before the solver argument
    assert torch.equal(model.decode(x_T, z, steps=6), today)
    assert torch.equal(model.decode(x_T, z, steps=6, solver="ddim"), today)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(model.decode(x_T, z, steps=6, eta=0.5, generator=g1, solver="ddim"),
                       model.decode(x_T, z, steps=6, eta=0.5, generator=g2))
    # dpmpp2m: DDIM's loop with the solver's hook = the solver's own step loop, bit for bit
    solver, x = DPMSolverPP2M(model.scheduler), x_T
    with torch.no_grad():
        for t, t_prev in zip(grid, grid[1:] + [-1]):
            x = solver.step(model.unet(x, model._t(t, x), z), t, t_prev, x).prev_sample
    dpm = model.decode(x_T, z, steps=6, solver="dpmpp2m")
    assert torch.equal(dpm, x.clamp(-1, 1))
    assert not torch.equal(dpm, today)
    # encode_stochastic likewise
    assert torch.equal(model.encode_stochastic(x0, z, steps=6, solver="ddim"), model.encode_stochastic(x0, z, steps=6))
    solver, x = DPMSolverPP2M(model.scheduler), x0
    up = model.scheduler.set_timesteps(6).flip(0).tolist()
    with torch.no_grad():
        for t, t_next in zip([-1] + up[:-1], up):
            x = solver.inverse_step(model.unet(x, model._t(t, x), z), t, t_next, x)
    assert torch.equal(model.encode_stochastic(x0, z, steps=6, solver="dpmpp2m"), x)


def test_unknown_solver_and_unsupported_combinations_are_refused():
    model = tiny_model()
    x = torch.zeros(1, 1, 16, 16)
    z = model.encode(x)
    assert SOLVER_CHOICES == ("ddim", "dpmpp2m")
    for call in (lambda: model.decode(x, z, steps=3, solver="dpm++"),
                 lambda: model.encode_stochastic(x, z, steps=3, solver="euler")):
        with pytest.raises(ValueError, match=r"solver must be one of \('ddim', 'dpmpp2m'\)"):
            call()
    with pytest.raises(ValueError, match="deterministic"):
        model.decode(x, z, steps=3, eta=1.0, solver="dpmpp2m")
    with pytest.raises(ValueError, match="fixed_point_iters"):
        model.encode_stochastic(x, z, steps=3, fixed_point_iters=2, solver="dpmpp2m")
