import pytest
import torch
from torch import nn

from usdiff.model import (
    ConditionalUNet,
    DDIMScheduler,
    DiffAE,
    DiffAEConfig,
    SemanticEncoder,
    count_parameters,
    get_config,
)


def small_config(image_size=32, **kw):
    """A test-sized model: a few hundred thousand parameters."""
    base = dict(image_size=image_size, base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
                attn_resolutions=(image_size // 4,), z_dim=32, enc_channel_mult=(1, 2, 2, 2), schedule="cosine")
    base.update(kw)
    return DiffAEConfig(**base)


def randomize_zero_inits(model: nn.Module, std: float = 0.02) -> nn.Module:
    """Give the zero-initialised output convolutions random weights, so the output depends on z."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def images(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("size", [32, 64])
def test_shapes(size):
    torch.manual_seed(0)
    model = DiffAE.from_config(small_config(size))
    x = images(2, size)
    z = model.encode(x)
    assert z.shape == (2, 32)
    eps = model.unet(x, torch.tensor([0, 999]), z)
    assert eps.shape == x.shape
    x_T = model.encode_stochastic(x, z, steps=3)
    assert x_T.shape == x.shape
    out = model.decode(x_T, z, steps=3)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    assert model.sample(3, z[:1], steps=2).shape == (3, 1, size, size)
    assert model.training_loss(x).shape == ()


def test_parts_standalone_shapes():
    enc = SemanticEncoder(image_size=64, base_channels=8, channel_mult=(1, 2, 2, 2, 2), num_res_blocks=1,
                          attn_resolutions=(8,), z_dim=20)
    unet = ConditionalUNet(image_size=64, base_channels=8, channel_mult=(1, 2, 4), num_res_blocks=2,
                           attn_resolutions=(16,), z_dim=20, num_heads=2)
    x = images(3, 64)
    z = enc(x)
    assert z.shape == (3, 20)
    assert unet(x, torch.tensor([1, 2, 3]), z).shape == (3, 1, 64, 64)


def test_bad_inputs_name_the_argument():
    model = DiffAE.from_config(small_config(32))
    with pytest.raises(ValueError, match=r"x0 must be 32x32"):
        model.encode(images(1, 64))
    with pytest.raises(ValueError, match=r"x0 must be 32x32"):
        model.encode(torch.zeros(1, 1, 32, 16))        # not square
    with pytest.raises(ValueError, match=r"x0 must have 1 channel"):
        model.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"x0 must be a \(B, C, H, W\)"):
        model.encode(torch.zeros(32, 32))
    with pytest.raises(ValueError, match=r"x_T must be 32x32"):
        model.decode(images(1, 16), torch.zeros(1, 32))
    with pytest.raises(ValueError, match=r"z_sem must have z_dim=32"):
        model.decode(images(1, 32), torch.zeros(1, 8))
    with pytest.raises(ValueError, match=r"z_sem has 2 rows"):
        model.decode(images(1, 32), torch.zeros(2, 32))
    with pytest.raises(ValueError, match="z_sem is required"):
        model.sample(2)


def test_config_validation_names_field():
    with pytest.raises(ValueError, match="image_size=36 must be divisible by 8"):
        DiffAEConfig(image_size=36, channel_mult=(1, 2, 2, 2), enc_channel_mult=(1, 2, 2, 2, 2))
    with pytest.raises(ValueError, match="attn_resolutions"):
        small_config(attn_resolutions=(12,))
    with pytest.raises(ValueError, match="schedule"):
        small_config(schedule="quadratic")
    with pytest.raises(ValueError, match="dropout"):
        small_config(dropout=1.5)
    with pytest.raises(ValueError, match="z_dim"):
        small_config(z_dim=0)
    with pytest.raises(ValueError, match="unknown config 'huge'"):
        get_config("huge")
    with pytest.raises(ValueError, match="unknown DiffAEConfig fields"):
        DiffAEConfig.from_dict({"image_size": 64, "colour": True})


def test_config_roundtrip():
    cfg, train = get_config("small")
    assert DiffAEConfig.from_dict(cfg.to_dict()) == cfg
    assert type(train).from_dict(train.to_dict()) == train


def test_paper_config_is_the_study():
    cfg, train = get_config("paper")
    assert (cfg.image_size, cfg.in_channels, cfg.base_channels) == (128, 1, 64)
    assert cfg.channel_mult == (1, 2, 4, 8)
    assert cfg.attn_resolutions == (16,) and cfg.num_heads == 1
    assert cfg.num_res_blocks == 2 and cfg.dropout == 0.1
    assert cfg.enc_channel_mult == (1, 2, 4, 8, 8) and cfg.z_dim == 512
    assert cfg.T == 1000 and cfg.schedule == "cosine"
    assert (train.lr, train.weight_decay, train.grad_clip, train.batch_size) == (1e-4, 0.0, 1.0, 16)
    assert train.amp and train.ema_decay == 0.9999 and train.epochs == 250 and train.total_steps is None
    model = DiffAE.from_config(cfg)
    n = count_parameters(model)
    assert abs(n - 92e6) / 92e6 < 0.02, n   # the study reports ~92 M


def test_tiny_config_fits_a_small_file():
    cfg, train = get_config("tiny")
    assert cfg.image_size == 64 and cfg.schedule == "cosine"
    n = count_parameters(DiffAE.from_config(cfg))
    assert n * 2 <= 4e6       # fp16 EMA weights <= 4 MB


def test_encoder_receives_gradient_from_the_loss():
    torch.manual_seed(0)
    model = DiffAE.from_config(small_config(32))
    x = images(4, 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    # the residual branches start at zero (zero-init convs), so step 0 only trains the output
    # convolutions; from the first update on, the loss reaches z_sem and the encoder
    for _ in range(2):
        opt.zero_grad()
        model.training_loss(x, generator=torch.Generator().manual_seed(0)).backward()
        opt.step()
    opt.zero_grad()
    model.training_loss(x, generator=torch.Generator().manual_seed(1)).backward()
    enc_grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in enc_grads)
    assert sum(g.abs().sum().item() for g in enc_grads) > 0
    assert model.encoder.head[-2].weight.grad.abs().max() > 0       # the 1x1 conv producing z_sem
    z_proj = [m.z_proj[1].weight.grad for m in model.unet.modules() if hasattr(m, "z_proj") and m.z_proj]
    assert z_proj and all(g.abs().max() > 0 for g in z_proj)


def test_z_sem_conditioning_is_not_zero_initialised():
    model = DiffAE.from_config(small_config(32))
    for m in model.unet.modules():
        if getattr(m, "z_proj", None) is not None:
            assert m.z_proj[1].weight.abs().max() > 0


def test_decode_with_another_images_z_changes_output():
    torch.manual_seed(0)
    model = randomize_zero_inits(DiffAE.from_config(small_config(32)))
    a, b = images(1, 32, seed=1), images(1, 32, seed=2) * 0.2
    z_a, z_b = model.encode(a), model.encode(b)
    assert not torch.allclose(z_a, z_b)
    x_T = model.encode_stochastic(a, z_a, steps=10)
    own = model.decode(x_T, z_a, steps=10)
    other = model.decode(x_T, z_b, steps=10)
    assert (own - other).abs().mean() > 1e-3
    # and decoding is deterministic for eta = 0
    assert torch.equal(own, model.decode(x_T, z_a, steps=10))


class GaussianEps(nn.Module):
    """The exact eps-predictor for data x_0 ~ N(m(z), s^2 I), with a mean image chosen by z_sem."""

    def __init__(self, scheduler, z_dim, size, s=0.5):
        super().__init__()
        self.register_buffer("ab", scheduler.alphas_cumprod.float())
        self.s, self.size = s, size
        self.mean = nn.Linear(z_dim, size * size, bias=False)

    def forward(self, x, t, z):
        ab = self.ab[t].view(-1, 1, 1, 1)
        m = 0.5 * torch.tanh(self.mean(z)).view(-1, 1, self.size, self.size)
        return (1 - ab).sqrt() * (x - ab.sqrt() * m) / (ab * self.s**2 + 1 - ab)


def test_ddim_inversion_reconstructs_and_converges():
    # With an exact denoiser the DDIM ODE is well defined, and encode_stochastic -> decode
    # must invert each other up to a discretisation error that shrinks with the number of steps.
    torch.manual_seed(0)
    cfg = small_config(32)
    sched = DDIMScheduler(cfg.schedule, cfg.T)
    encoder = DiffAE.from_config(cfg).encoder
    model = DiffAE(encoder=encoder, unet=GaussianEps(sched, cfg.z_dim, 32), scheduler=sched, config=cfg)
    x0 = images(4, 32)
    z = model.encode(x0)
    errors = []
    for steps in (10, 25, 50, 100):
        x_T = model.encode_stochastic(x0, z, steps=steps)
        errors.append(((model.decode(x_T, z, steps=steps) - x0) ** 2).mean().item())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-3, errors
    assert model.reconstruct(x0, steps=100).sub(x0).pow(2).mean() < 1e-3


def test_fixed_point_inversion_is_the_exact_inverse_of_decoding():
    # Plain DDIM inversion evaluates eps at the start of each step, decoding at its end; the
    # fixed-point refinement makes each inversion step the exact inverse of its decoding step.
    torch.manual_seed(0)
    model = randomize_zero_inits(DiffAE.from_config(small_config(32)), std=0.01)
    x0 = images(2, 32) * 0.8
    z = model.encode(x0)
    plain = model.encode_stochastic(x0, z, steps=8)
    assert torch.equal(plain, model.encode_stochastic(x0, z, steps=8, fixed_point_iters=0))
    refined = model.encode_stochastic(x0, z, steps=8, fixed_point_iters=30, tol=1e-7)
    err_plain = (model.decode(plain, z, steps=8) - x0).pow(2).mean().item()
    err_refined = (model.decode(refined, z, steps=8) - x0).pow(2).mean().item()
    assert err_plain > 1e-3, err_plain        # the random model makes plain inversion inexact ...
    assert err_refined < 1e-9, (err_plain, err_refined)   # ... and refinement makes it exact
    rec = model.reconstruct(x0, steps=8, fixed_point_iters=30)
    assert (rec - x0).pow(2).mean().item() < err_plain * 1e-2
    # each image is refined on its own: the same code alone as in a batch
    alone = torch.cat([model.encode_stochastic(x0[i:i + 1], z[i:i + 1], steps=8, fixed_point_iters=5, tol=1e-4)
                       for i in range(2)])
    torch.testing.assert_close(model.encode_stochastic(x0, z, steps=8, fixed_point_iters=5, tol=1e-4), alone,
                               rtol=1e-4, atol=1e-5)


def test_fixed_point_refinement_stops_at_tol_and_validates():
    model = randomize_zero_inits(DiffAE.from_config(small_config(32)))
    x0 = images(1, 32)
    z = model.encode(x0)
    calls = []
    hook = model.unet.register_forward_hook(lambda *_: calls.append(1))
    model.encode_stochastic(x0, z, steps=5, fixed_point_iters=4, tol=1e9)   # every step converges at once
    assert len(calls) == 5 * 2
    calls.clear()
    model.encode_stochastic(x0, z, steps=5, fixed_point_iters=4, tol=1e-12)  # never below tol: 4 each
    assert len(calls) == 5 * (1 + 4)
    hook.remove()
    with pytest.raises(ValueError, match="fixed_point_iters must be an int >= 0"):
        model.encode_stochastic(x0, z, steps=5, fixed_point_iters=-1)
    with pytest.raises(ValueError, match="tol must be > 0"):
        model.encode_stochastic(x0, z, steps=5, fixed_point_iters=2, tol=0.0)


def test_inference_restores_training_mode():
    model = DiffAE.from_config(small_config(32, dropout=0.5))
    model.train()
    x = images(1, 32)
    z = model.encode(x)
    assert model.training
    assert torch.equal(z, model.encode(x))    # dropout is off inside encode


def test_attention_block_matches_softmax_attention_per_head():
    from usdiff.model.unet import AttentionBlock

    torch.manual_seed(0)
    block = randomize_zero_inits(AttentionBlock(8, num_heads=2))
    x = torch.randn(2, 8, 3, 4)
    h = block.norm(x).flatten(2).transpose(1, 2)                     # (B, HW, C)
    q, k, v = (h @ block.qkv.weight.T + block.qkv.bias).split(8, dim=-1)
    heads = []
    for s in (slice(0, 4), slice(4, 8)):                              # 2 heads of 4 channels
        a = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 2.0, dim=-1)   # sqrt(4) = 2
        heads.append(a @ v[..., s])
    out = torch.cat(heads, -1) @ block.proj.weight.T + block.proj.bias
    expected = x + out.transpose(1, 2).reshape(x.shape)
    assert torch.allclose(block(x), expected, atol=1e-5)


def test_attention_block_loads_1x1_conv_kernels():
    from usdiff.model.unet import AttentionBlock

    torch.manual_seed(0)
    block = randomize_zero_inits(AttentionBlock(8))
    old_style = {k: (v[:, :, None, None] if v.dim() == 2 else v) for k, v in block.state_dict().items()}
    assert old_style["qkv.weight"].shape == (24, 8, 1, 1)
    fresh = AttentionBlock(8)
    fresh.load_state_dict(old_style)
    x = torch.randn(1, 8, 4, 4)
    assert torch.equal(fresh(x), block(x))


def test_resblock_applies_the_diffae_adaptive_group_norm():
    from usdiff.model.unet import ResBlock

    torch.manual_seed(0)
    block = randomize_zero_inits(ResBlock(8, 8, time_dim=6, z_dim=5))
    x, t_emb, z = torch.randn(2, 8, 4, 4), torch.randn(2, 6), torch.randn(2, 5)
    t_s, t_b = block.time_proj(t_emb)[:, :, None, None].chunk(2, dim=1)
    z_s = block.z_proj(z)[:, :, None, None]
    h = (1 + z_s) * ((1 + t_s) * block.out_norm(block.in_layers(x)) + t_b)   # (1 + z_s)((1 + t_s) GN(h) + t_b)
    assert torch.allclose(block(x, t_emb, z), x + block.out_layers(h), atol=1e-5)


def test_decode_trajectory_matches_decode_and_starts_at_the_conditional_mean():
    # With the exact denoiser of x_0 ~ N(m(z), s^2 I): at t = T (alpha_bar ~ 0) the best guess of x_0 is
    # m(z) itself, whatever x_T is; the trajectory's last state is decode()'s output and its last guess.
    torch.manual_seed(0)
    cfg = small_config(32)
    sched = DDIMScheduler(cfg.schedule, cfg.T)
    eps_model = GaussianEps(sched, cfg.z_dim, 32)
    model = DiffAE(encoder=DiffAE.from_config(cfg).encoder, unet=eps_model, scheduler=sched, config=cfg)
    z = model.encode(images(2, 32))
    x_T = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    traj = model.decode_trajectory(x_T, z, steps=10)
    assert traj["t"].tolist() == sched.set_timesteps(10).tolist() and traj["t"][0] > traj["t"][-1]
    assert traj["x_t"].shape == (11, 2, 1, 32, 32) and traj["x0"].shape == (10, 2, 1, 32, 32)
    assert torch.equal(traj["x_t"][0], x_T)
    assert torch.allclose(traj["x_t"][-1].clamp(-1, 1), model.decode(x_T, z, steps=10), atol=1e-6)
    assert torch.allclose(traj["x_t"][-1], traj["x0"][-1], atol=1e-6)
    mean = 0.5 * torch.tanh(eps_model.mean(z)).view(2, 1, 32, 32)
    # x0_hat is the posterior mean E[x_0 | x_t] = (sqrt(a) s^2 x_t + (1 - a) m) / (a s^2 + 1 - a)
    a, s2 = float(sched.alphas_cumprod[traj["t"][0]]), eps_model.s ** 2
    posterior = (a ** 0.5 * s2 * x_T + (1 - a) * mean) / (a * s2 + 1 - a)
    torch.testing.assert_close(traj["x0"][0], posterior, atol=1e-4, rtol=1e-4)
    assert (traj["x0"][0] - mean).abs().max() < (traj["x0"][0] - x_T).abs().max() / 10   # near m(z), far from x_T
    with pytest.raises(ValueError, match="z_sem"):
        model.decode_trajectory(x_T, z[:1], steps=3)
