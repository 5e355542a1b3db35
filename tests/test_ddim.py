import pytest
import torch

from usdiff.model import DDIMScheduler, get_schedule


@pytest.fixture
def sched():
    return DDIMScheduler("cosine", 1000)


def test_set_timesteps_grid(sched):
    ts = sched.set_timesteps(20)
    assert ts.tolist() == list(range(950, -1, -50))
    assert sched.set_timesteps(1).tolist() == [0]
    assert sched.set_timesteps(1000).tolist() == list(range(999, -1, -1))
    ts = sched.set_timesteps(3)
    assert ts.tolist() == [666, 333, 0]


@pytest.mark.parametrize("n", [0, 1001, -1])
def test_set_timesteps_errors(sched, n):
    with pytest.raises(ValueError, match="num_inference_steps"):
        sched.set_timesteps(n)


def test_accepts_betas_tensor():
    betas = get_schedule("linear", 50)
    s = DDIMScheduler(betas)
    assert s.num_train_timesteps == 50
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(1 - betas, 0))


def test_add_noise_closed_form_and_predict_x0_inverts(sched):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(3, 1, 8, 8, generator=g)
    t = torch.tensor([0, 400, 999])
    x_t = sched.add_noise(x0, noise, t)
    ab = sched.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    assert torch.allclose(x_t, ab.sqrt() * x0 + (1 - ab).sqrt() * noise)
    assert torch.allclose(sched.predict_x0(noise[:2], t[:2], x_t[:2]), x0[:2], atol=1e-5)
    assert torch.allclose(sched.predict_eps(x0, t, x_t), noise, atol=1e-4)


def test_add_noise_variance_preserving(sched):
    # Var(x_t) = alpha_bar Var(x0) + (1 - alpha_bar): unit-variance data stays unit variance
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(200_000, generator=g).view(-1, 1, 1, 1)
    noise = torch.randn(x0.shape, generator=g)
    x_t = sched.add_noise(x0, noise, torch.full((len(x0),), 300))
    assert x_t.var().item() == pytest.approx(1.0, abs=0.01)


def test_step_with_true_noise_stays_on_trajectory(sched):
    # eta = 0 and the exact eps: x_t -> x_{t_prev} lands on add_noise(x0, eps, t_prev) (DDIM eq. 12)
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    x_t = sched.add_noise(x0, eps, torch.tensor([700, 700]))
    x_prev = sched.step(eps, 700, 350, x_t).prev_sample
    assert torch.allclose(x_prev, sched.add_noise(x0, eps, torch.tensor([350, 350])), atol=1e-5)
    assert torch.allclose(sched.step(eps, 700, -1, x_t).prev_sample, x0, atol=1e-4)


def test_inverse_step_undoes_step(sched):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, 8, 8, generator=g)
    eps = torch.randn(x.shape, generator=g)
    x_prev = sched.step(eps, 600, 550, x).prev_sample
    assert torch.allclose(sched.inverse_step(eps, 550, 600, x_prev), x, atol=1e-5)
    x0 = torch.rand(2, 1, 8, 8, generator=g)
    assert torch.allclose(sched.step(eps, 0, -1, sched.inverse_step(eps, -1, 0, x0)).prev_sample, x0, atol=1e-5)


def test_eta_one_matches_ddpm_posterior(sched):
    # with eta = 1 and t_prev = t - 1, sigma^2 is the DDPM posterior variance (1-ab_prev)/(1-ab_t) beta_t
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 1, 8, 8, generator=g)
    eps = torch.randn(x.shape, generator=g)
    t = 500
    out = sched.step(eps, t, t - 1, x, eta=1.0, generator=torch.Generator().manual_seed(9)).prev_sample
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    ab_t, ab_prev, beta = (sched.alphas_cumprod[t], sched.alphas_cumprod[t - 1], sched.betas[t])
    var = (1 - ab_prev) / (1 - ab_t) * beta
    x0 = (x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    expected = ab_prev.sqrt() * x0 + (1 - ab_prev - var).sqrt() * eps + var.sqrt() * noise
    assert torch.allclose(out, expected.float(), atol=1e-5)


def test_eta_noise_is_reproducible_and_varies(sched):
    x = torch.randn(1, 1, 8, 8)
    eps = torch.randn_like(x)
    a = sched.step(eps, 500, 400, x, eta=0.5, generator=torch.Generator().manual_seed(0)).prev_sample
    b = sched.step(eps, 500, 400, x, eta=0.5, generator=torch.Generator().manual_seed(0)).prev_sample
    c = sched.step(eps, 500, 400, x, eta=0.5, generator=torch.Generator().manual_seed(1)).prev_sample
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_clip_x0_bounds_prediction(sched):
    x = torch.full((1, 1, 4, 4), 5.0)
    eps = torch.zeros_like(x)
    assert sched.step(eps, 10, -1, x, clip_x0=True).prev_sample.abs().max().item() <= 1.0 + 1e-6


def test_timestep_out_of_range(sched):
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="timesteps"):
        sched.step(x, 1000, 10, x)
