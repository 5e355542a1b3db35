"""v-prediction, zero terminal SNR and trailing timesteps (Salimans & Ho 2022; Lin et al. 2024)."""
import pytest
import torch
from torch import nn

from usdiff.model import DDIMScheduler, DiffAE, DiffAEConfig, get_schedule
from usdiff.model.diffae import min_snr_weights
from usdiff.model.schedules import alphas_cumprod, rescale_zero_terminal_snr


def vsched(**kw):
    return DDIMScheduler("cosine", 1000, prediction="v", zero_terminal_snr=True, spacing="trailing", **kw)


def data(n=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1, torch.randn(n, 1, size, size, generator=g)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_zero_terminal_snr_rescale_closed_form(name):
    betas = get_schedule(name, 1000)
    new = rescale_zero_terminal_snr(betas)
    ab, ab_new = alphas_cumprod(betas), alphas_cumprod(new)
    assert ab_new[-1] == 0 and new[-1] == 1                       # x_{T-1} is pure noise
    assert ab_new[0] == pytest.approx(float(ab[0]), rel=1e-12)    # the first step is kept
    assert (new >= 0).all() and (new <= 1).all() and (ab_new[1:] < ab_new[:-1]).all()
    # Algorithm 1 is an affine map of sqrt(alpha_bar): (s - s_T) * s_0 / (s_0 - s_T)
    s = ab.sqrt()
    torch.testing.assert_close(ab_new.sqrt(), (s - s[-1]) * s[0] / (s[0] - s[-1]))
    # the linear schedule keeps sqrt(abar) = 0.0064 of the image at T - 1; the rescale removes it
    assert float(ab[-1].sqrt()) > (4e-3 if name == "linear" else 0)


def test_trailing_grid_starts_at_the_last_training_step():
    s = vsched()
    assert s.set_timesteps(20).tolist() == list(range(999, 0, -50))
    assert s.set_timesteps(1).tolist() == [999]
    assert s.set_timesteps(1000).tolist() == list(range(999, -1, -1))
    assert s.set_timesteps(3).tolist() == [999, 666, 332]
    assert DDIMScheduler("cosine").set_timesteps(20)[0] == 950      # leading: unchanged


def test_v_target_and_split_invert_each_other_even_at_zero_snr():
    s = vsched()
    x0, noise = data()
    t = torch.tensor([0, 500, 999])
    x_t, v = s.add_noise(x0, noise, t), s.target(x0, noise, t)
    ab = s.alpha_bar(t, x0)
    torch.testing.assert_close(v, ab.sqrt() * noise - (1 - ab).sqrt() * x0)
    torch.testing.assert_close(v[2], -x0[2])                      # at abar = 0: v = -x_0
    x0_back, eps_back = s.split(v, t, x_t)
    torch.testing.assert_close(x0_back, x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(eps_back, noise, atol=1e-5, rtol=0)
    # an eps scheduler's target is the noise and split gives back (predict_x0, eps)
    e = DDIMScheduler("cosine")
    assert torch.equal(e.target(x0, noise, t), noise)
    # output_from_eps is split's inverse (where abar > 0, as guidance needs)
    t2 = torch.tensor([10, 400, 900])
    x_t2 = s.add_noise(x0, noise, t2)
    torch.testing.assert_close(s.split(s.output_from_eps(noise, t2, x_t2), t2, x_t2)[1], noise, atol=1e-4, rtol=0)
    assert torch.equal(e.output_from_eps(noise, t2, x_t2), noise)


def test_step_with_the_true_v_stays_on_the_trajectory_from_pure_noise():
    s = vsched()
    x0, noise = data(seed=1)
    x_T = s.add_noise(x0, noise, torch.full((3,), 999))
    assert torch.equal(x_T, noise)                                # nothing of the image is left
    v = s.target(x0, noise, torch.full((3,), 999))
    torch.testing.assert_close(s.step(v, 999, 949, x_T).prev_sample, s.add_noise(x0, noise, torch.full((3,), 949)),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(s.step(v, 999, -1, x_T).prev_sample, x0, atol=1e-5, rtol=0)


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("t, t_next", [(-1, 49), (449, 499), (949, 999)])
def test_exact_inverse_step_undoes_step(prediction, t, t_next):
    s = vsched() if prediction == "v" else DDIMScheduler("cosine")
    g = torch.Generator().manual_seed(5)
    x_next, out = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    x = s.step(out, t_next, t, x_next).prev_sample
    torch.testing.assert_close(s.exact_inverse_step(out, t, t_next, x), x_next, atol=1e-4, rtol=0)


def test_invalid_combinations_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="needs prediction='v'"):
        DDIMScheduler("cosine", zero_terminal_snr=True)
    with pytest.raises(ValueError, match="prediction must be one of"):
        DDIMScheduler("cosine", prediction="x0")
    with pytest.raises(ValueError, match="spacing must be one of"):
        DDIMScheduler("cosine", spacing="linspace")
    with pytest.raises(ValueError, match="DiffAEConfig.zero_terminal_snr=True needs prediction='v'"):
        DiffAEConfig(zero_terminal_snr=True)
    with pytest.raises(ValueError, match="DiffAEConfig.prediction"):
        DiffAEConfig(prediction="sample")
    with pytest.raises(ValueError, match="DiffAEConfig.timestep_spacing"):
        DiffAEConfig(timestep_spacing="leadng")
    with pytest.raises(ValueError, match="prediction must be 'eps' or 'v'"):
        min_snr_weights(torch.tensor([0.5]), prediction="x0")


def test_min_snr_weights_for_v_closed_form():
    ab = torch.tensor([0.0, 0.5, 5 / 6, 0.99], dtype=torch.float64)   # SNR 0, 1, 5, 99
    torch.testing.assert_close(min_snr_weights(ab, 5.0, prediction="v"),
                               torch.tensor([0.0, 0.5, 5 / 6, 5 / 100], dtype=torch.float64))
    torch.testing.assert_close(min_snr_weights(ab[1:], 5.0), torch.tensor([1.0, 1.0, 5 / 99], dtype=torch.float64))


class GaussianOracle(nn.Module):
    """The exact denoiser of x_0 ~ N(m(z), s^2 I), as eps or as v: with x0_hat = E[x_0 | x_t] =
    (sqrt(a) s^2 x_t + (1 - a) m) / (a s^2 + 1 - a), eps_hat = sqrt(1 - a) (x_t - sqrt(a) m) / (a s^2 + 1 - a)
    and v_hat = sqrt(a) eps_hat - sqrt(1 - a) x0_hat (no division by sqrt(a): defined at a = 0)."""

    def __init__(self, scheduler, z_dim, size, s=0.5):
        super().__init__()
        self.register_buffer("ab", scheduler.alphas_cumprod.float())
        self.s, self.size, self.prediction = s, size, scheduler.prediction
        self.mean = nn.Linear(z_dim, size * size, bias=False)

    def m(self, z):
        return 0.5 * torch.tanh(self.mean(z)).view(-1, 1, self.size, self.size)

    def forward(self, x, t, z):
        a, m = self.ab[t].view(-1, 1, 1, 1), self.m(z)
        d = a * self.s**2 + 1 - a
        eps = (1 - a).sqrt() * (x - a.sqrt() * m) / d
        if self.prediction == "eps":
            return eps
        return a.sqrt() * eps - (1 - a).sqrt() * (a.sqrt() * self.s**2 * x + (1 - a) * m) / d


def oracle_model(sched, size=16, seed=0):
    torch.manual_seed(seed)
    cfg = DiffAEConfig(image_size=size, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                       z_dim=8, enc_channel_mult=(1, 2), T=1000, prediction=sched.prediction,
                       zero_terminal_snr=sched.zero_terminal_snr, timestep_spacing=sched.spacing)
    encoder = DiffAE.from_config(cfg).encoder
    return DiffAE(encoder=encoder, unet=GaussianOracle(sched, cfg.z_dim, size), scheduler=sched, config=cfg)


def test_eps_and_v_are_one_ode():
    # the same exact denoiser, once as eps and once as v, on the same schedule: DDIM decodes and
    # inverts alike (the parameterisation is the network's business, not the sampler's)
    models = [oracle_model(DDIMScheduler("cosine", prediction=p)) for p in ("eps", "v")]
    models[1].unet.mean.load_state_dict(models[0].unet.mean.state_dict())
    models[1].encoder.load_state_dict(models[0].encoder.state_dict())
    x0, _ = data(2, 16, seed=2)
    z = models[0].encode(x0)
    x_T = [m.encode_stochastic(x0, z, steps=10) for m in models]
    torch.testing.assert_close(x_T[0], x_T[1], atol=1e-4, rtol=0)
    torch.testing.assert_close(models[0].decode(x_T[0], z, steps=10), models[1].decode(x_T[0], z, steps=10),
                               atol=1e-4, rtol=0)


def test_zero_terminal_snr_first_guess_is_the_conditional_mean_whatever_x_T():
    # No signal leak: at t = T - 1 the exact model's x0_hat is m(z) for any x_T, so only z_sem can set
    # the image's brightness and domain. With leading eps sampling it depends on x_T.
    v = oracle_model(vsched())
    z = torch.randn(2, 8)
    x_a = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    x_b = 3 * torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(2)) + 1
    first = [v.decode_trajectory(x, z, steps=10)["x0"][0] for x in (x_a, x_b)]
    torch.testing.assert_close(first[0], v.unet.m(z))
    torch.testing.assert_close(first[1], v.unet.m(z))
    eps = oracle_model(DDIMScheduler("cosine"))
    eps.unet.mean.load_state_dict(v.unet.mean.state_dict())
    leak = [eps.decode_trajectory(x, z, steps=10)["x0"][0] for x in (x_a, x_b)]
    assert (leak[0] - leak[1]).abs().max() > 0.05


def test_v_model_reconstructs_through_pure_noise_with_fixed_point_inversion():
    model = oracle_model(vsched())
    x0 = (model.unet.m(torch.randn(3, 8)) + 0.5 * torch.randn(3, 1, 16, 16)).clamp(-1, 1)
    z = torch.randn(3, 8)
    x_T = model.encode_stochastic(x0, z, steps=20, fixed_point_iters=30, tol=1e-7)
    err = (model.decode(x_T, z, steps=20) - x0).pow(2).mean()
    assert err < 1e-8
    plain = model.encode_stochastic(x0, z, steps=20)
    assert (model.decode(plain, z, steps=20) - x0).pow(2).mean() > 100 * err


def test_v_training_loss_is_the_mse_to_v():
    torch.manual_seed(0)
    cfg = DiffAEConfig(image_size=16, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                       z_dim=8, enc_channel_mult=(1, 2), T=100, prediction="v", zero_terminal_snr=True,
                       timestep_spacing="trailing")
    model = DiffAE.from_config(cfg)
    x = torch.rand(6, 1, 16, 16) * 2 - 1
    t = torch.tensor([0, 20, 50, 80, 98, 99])
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    out = model.unet(model.scheduler.add_noise(x, noise, t), t, model.encoder(x))
    per_image = (out - model.scheduler.target(x, noise, t)).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(model.training_loss(x, t=t, noise=noise), per_image.mean())
    w = min_snr_weights(model.scheduler.alphas_cumprod[t], 5.0, prediction="v").float()
    torch.testing.assert_close(model.training_loss(x, t=t, noise=noise, weighting="min_snr"), (w * per_image).mean())
    assert w[-1] == 0                                              # SNR = 0 at the last step
    assert DiffAEConfig.from_dict(cfg.to_dict()) == cfg
