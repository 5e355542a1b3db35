"""The prior of the random stochastic code x_T (DiffAE.random_x_T) and the data statistics behind it."""
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import blobs, model_config, train_config

from usdiff.model import DiffAE, DiffAEConfig
from usdiff.train import Trainer, dataset_images, load_model, save_pretrained


def tiny(size=16):
    return DiffAE.from_config(DiffAEConfig(image_size=size, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                                           attn_resolutions=(), z_dim=8, enc_channel_mult=(1, 2)))


def test_gaussian_prior_is_standard_normal_noise():
    model = tiny()
    x = model.random_x_T(3, steps=20, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x, torch.randn((3, 1, 16, 16), generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("steps", [20, 100])
def test_data_prior_has_the_moments_of_x_t_at_the_first_ddim_step(steps):
    """x_t0 = sqrt(abar) x0 + sqrt(1 - abar) eps: per pixel mean sqrt(abar) m, variance abar s^2 + 1 - abar."""
    model = tiny()
    mean = torch.linspace(-1, 0.5, 256).reshape(1, 1, 16, 16)
    std = torch.linspace(0.0, 0.6, 256).reshape(1, 1, 16, 16)
    images = torch.cat([mean - std, mean + std])           # two images: per-pixel mean `mean`, std sqrt(2) * std
    model.set_data_stats(images)
    assert torch.allclose(model.data_mean, mean, atol=1e-6)
    assert torch.allclose(model.data_std, std * 2 ** 0.5, atol=1e-6)
    t0 = 1000 - 1000 // steps
    abar = float(model.scheduler.alphas_cumprod[t0])
    x = model.random_x_T(20_000, steps=steps, prior="data", generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x.mean(0, keepdim=True), abar ** 0.5 * mean, atol=0.03)
    want_var = abar * 2 * std ** 2 + 1 - abar
    assert torch.allclose(x.var(0, keepdim=True), want_var, rtol=0.05)
    assert abar ** 0.5 * (mean.max() - mean.min()) > 0.02 if steps == 20 else True   # a leak large enough to read


def test_prior_errors_name_the_problem():
    model = tiny()
    with pytest.raises(ValueError, match="prior must be"):
        model.random_x_T(2, prior="uniform")
    with pytest.raises(ValueError, match="set_data_stats"):
        model.random_x_T(2, prior="data")
    with pytest.raises(ValueError, match=r"images must be \(N >= 2, 1, 16, 16\)"):
        model.set_data_stats(torch.zeros(4, 1, 8, 8))
    with pytest.raises(ValueError, match="N >= 2"):
        model.set_data_stats(torch.zeros(1, 1, 16, 16))


class CountingDataset(torch.utils.data.Dataset):
    """Counts the images read from it."""

    def __init__(self, data):
        self.data, self.reads = data, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.reads += 1
        return self.data[i]


def test_trainer_stores_the_statistics_and_every_checkpoint_carries_them(tmp_path):
    data = blobs()
    torch.manual_seed(0)
    trainer = Trainer(DiffAE.from_config(model_config()), data, train_config(), tmp_path, device="cpu", progress=False)
    assert trainer.model.data_mean is None                 # computed when first needed, not at start-up
    trainer.fit(2)
    want = dataset_images(data)
    assert len(want) == len(data)                          # a small data set: all of its images
    assert torch.allclose(trainer.model.data_mean, want.mean(0, keepdim=True), atol=1e-6)
    assert torch.equal(trainer.ema.model.data_mean, trainer.model.data_mean)
    for path in (trainer.ckpt_path, save_pretrained(trainer, tmp_path / "small.pt")):
        loaded = load_model(path, device="cpu")
        assert torch.equal(loaded.data_mean, trainer.model.data_mean), path
        assert torch.equal(loaded.data_std, trainer.model.data_std), path
    resumed = Trainer(DiffAE.from_config(model_config()), blobs(seed=1), train_config(), tmp_path, device="cpu",
                      progress=False).resume()
    assert torch.equal(resumed.model.data_mean, trainer.model.data_mean)   # the checkpoint's, not blobs(seed=1)'s
    counting = CountingDataset(blobs(seed=1))
    resumed = Trainer(DiffAE.from_config(model_config()), counting, train_config(), tmp_path, device="cpu",
                      progress=False).resume()
    resumed.save(tmp_path / "again.pt")
    assert counting.reads == 0                             # resuming reads no images for statistics it replaces
    assert torch.equal(load_model(tmp_path / "again.pt", device="cpu").data_std, trainer.model.data_std)


def test_a_checkpoint_saved_before_training_has_the_statistics_too(tmp_path):
    data = blobs()
    trainer = Trainer(DiffAE.from_config(model_config()), data, train_config(), tmp_path, device="cpu", progress=False)
    loaded = load_model(trainer.save(), device="cpu")
    assert torch.allclose(loaded.data_mean, dataset_images(data).mean(0, keepdim=True), atol=1e-6)
    assert torch.equal(trainer.ema.model.data_std, trainer.model.data_std)


def test_dataset_images_are_evenly_spaced_and_checked():
    data = blobs(n=10)
    assert torch.equal(dataset_images(data, n=4), data[:][0][[0, 3, 6, 9]])
    with pytest.raises(ValueError, match="at least 2"):
        dataset_images(blobs(n=1))


def test_the_eps_checkpoint_keeps_brightness_only_with_the_data_prior():
    """The signal leak of assets/diffae_tiny_eps.pt, measured: DDIM's first step (t = 950 of 1000 for 20 steps) still holds 7.6 % of the
    image, so the model reads brightness from x_T. N(0, I) makes real-like codes decode far too bright;
    the data prior gives the held-out images' brightness back."""
    from usdiff.data import assign_splits, item_seed, render_item

    model = load_model(Path(__file__).resolve().parents[1] / "assets" / "diffae_tiny_eps.pt", device="cpu")
    assert model.data_mean is not None and model.config.prediction == "eps"
    idx = [i for i, s in enumerate(assign_splits(12_000, 0)) if s == "test"][:8]
    x = torch.from_numpy(np.stack([render_item(item_seed(0, i), 128)[1] for i in idx])).float()[:, None] / 255
    x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True) * 2 - 1
    z = model.encode(x)
    brightness = {}
    for prior in ("gaussian", "data"):
        out = model.sample(len(x), z, steps=20, generator=torch.Generator().manual_seed(0), prior=prior)
        brightness[prior] = (out - x).mean().item()          # mean brightness error, on [-1, 1]
    assert abs(brightness["data"]) < 0.1 < brightness["gaussian"], brightness


def test_the_shipped_v_checkpoint_has_no_signal_leak_and_decodes_with_z_sem():
    """assets/diffae_tiny.pt predicts v on a zero-terminal-SNR schedule and samples from t = T - 1, where x_T
    is pure noise: its samples from N(0, I) must get their brightness from z_sem alone (the eps checkpoint's are
    > 0.1 too bright, test above), and swapping z_sem must move an image most of the way to the other."""
    from usdiff.data import assign_splits, item_seed, render_item
    from usdiff.experiments import z_swap_ratio

    model = load_model(Path(__file__).resolve().parents[1] / "assets" / "diffae_tiny.pt", device="cpu")
    c = model.config
    assert (c.prediction, c.zero_terminal_snr, c.timestep_spacing) == ("v", True, "trailing")
    assert model.scheduler.alphas_cumprod[int(model.scheduler.set_timesteps(20)[0])] == 0
    idx = [i for i, s in enumerate(assign_splits(12_000, 0)) if s == "test"][:8]
    x = torch.from_numpy(np.stack([render_item(item_seed(0, i), 128)[1] for i in idx])).float()[:, None] / 255
    x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True) * 2 - 1
    out = model.sample(len(x), model.encode(x), steps=20, generator=torch.Generator().manual_seed(0))
    assert abs((out - x).mean().item()) < 0.1
    assert np.median(z_swap_ratio(model, x, torch.roll(x, 1, 0), steps=20)) > 0.3
