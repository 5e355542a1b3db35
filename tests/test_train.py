import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

import usdiff.train
from usdiff.model import DiffAE, DiffAEConfig, TrainConfig, get_config
from usdiff.train import EMA, Trainer, load_model, save_pretrained


def blobs(n=48, size=32, seed=0):
    """A data set of dark round blobs on a bright background: ``(image (1, H, W) in [-1, 1], domain)``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = torch.rand(n, 2, generator=g) * size * 0.6 + size * 0.2
    radii = torch.rand(n, generator=g) * size * 0.15 + size * 0.1
    d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    images = torch.where(d2 < radii[:, None, None] ** 2, -0.8, 0.6)[:, None]
    return TensorDataset(images.float(), torch.arange(n) % 2)


def model_config(**kw):
    base = dict(image_size=32, base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,),
                z_dim=32, enc_channel_mult=(1, 2, 2, 2))
    base.update(kw)
    return DiffAEConfig(**base)


def train_config(**kw):
    base = dict(batch_size=8, lr=1e-3, total_steps=50, epochs=None, ema_decay=0.99, sample_every=0, ckpt_every=0,
                log_every=5, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def make_trainer(tmp_path, model_kw=None, train_kw=None, seed=0):
    torch.manual_seed(seed)
    model = DiffAE.from_config(model_config(**(model_kw or {})))
    return Trainer(model, blobs(), train_config(**(train_kw or {})), tmp_path, device="cpu", progress=False)


def test_ema_update_closed_form():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    ema = EMA(model, decay=0.9, warmup=False)
    before = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    ema.update(model)
    for old, shadow, param in zip(before, ema.model.parameters(), model.parameters()):
        assert torch.allclose(shadow, 0.9 * old + 0.1 * param, atol=1e-7)
    assert ema.num_updates == 1 and not any(p.requires_grad for p in ema.model.parameters())


def test_ema_warmup_and_copy_roundtrip():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)          # (1 + 0) / (10 + 0)
    for _ in range(5):
        ema.update(model)
    assert ema.current_decay() == pytest.approx(6 / 15)
    ema.num_updates = 10_000
    assert ema.current_decay() == 0.999
    other = torch.nn.Linear(2, 2)
    ema.copy_to(other)
    assert torch.equal(other.weight, ema.model.weight)
    restored = EMA(torch.nn.Linear(2, 2), decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.num_updates == 10_000 and torch.equal(restored.model.weight, ema.model.weight)


def test_ema_copies_buffers_by_name_when_a_buffer_is_set_later():
    class Buffers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.register_buffer("stats", None)          # set later, like DiffAE.data_mean
            self.register_buffer("steps", torch.zeros(3))

    model = Buffers()
    ema = EMA(model, decay=0.5, warmup=False)
    model.stats = torch.ones(2)                           # the model now has one buffer more, ahead of `steps`
    model.steps += 7
    ema.update(model)
    assert torch.equal(ema.model.steps, torch.full((3,), 7.0)) and ema.model.stats is None


def test_training_reduces_loss(tmp_path):
    trainer = make_trainer(tmp_path).fit(50)
    losses = trainer.history
    assert len(losses) == 50 and trainer.step == 50
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    assert (tmp_path / "ckpt.pt").is_file()


def test_resume_gives_identical_next_loss(tmp_path):
    # dropout on, and 7 steps with 6 batches per epoch: the RNGs and the data position must all be restored
    a = make_trainer(tmp_path / "a", model_kw={"dropout": 0.2}).fit(7)
    a.fit(1)
    expected = a.history[-1]
    ckpt = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == 8

    b_dir = tmp_path / "b"
    first = make_trainer(b_dir, model_kw={"dropout": 0.2}).fit(7)
    first.save()
    resumed = make_trainer(b_dir, model_kw={"dropout": 0.2}, seed=99).resume(b_dir / "ckpt.pt")
    assert resumed.step == 7 and resumed.history == a.history[:7]
    assert (resumed.epoch, resumed.batch_in_epoch) == (1, 1)
    resumed.fit(1)
    assert resumed.history[-1] == expected
    for p, q in zip(resumed.model.parameters(), a.model.parameters()):
        assert torch.equal(p, q)


def test_checkpoint_contents_and_config_mismatch(tmp_path):
    trainer = make_trainer(tmp_path).fit(2)
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert {"config", "train_config", "model", "ema", "optimizer", "scaler", "step", "rng", "history"} <= set(ckpt)
    assert {"torch", "cuda", "numpy", "python", "noise"} <= set(ckpt["rng"])
    assert ckpt["config"]["z_dim"] == 32 and ckpt["step"] == 2 and len(ckpt["history"]) == 2
    other = make_trainer(tmp_path / "other", model_kw={"z_dim": 16})
    with pytest.raises(ValueError, match="z_dim"):
        other.resume(trainer.ckpt_path)


def test_sample_grid_written(tmp_path):
    trainer = make_trainer(tmp_path, train_kw={"sample_every": 2})
    trainer.fit(2)
    grid = tmp_path / "samples" / "step_000002.png"
    assert grid.is_file()
    w, h = Image.open(grid).size
    assert (h, w) == (3 * 32 + 2 * 2, 8 * 32 + 7 * 2)    # inputs, reconstructions, random x_T


def test_load_model_and_save_pretrained(tmp_path):
    trainer = make_trainer(tmp_path).fit(3)
    x = blobs(4)[:][0]
    ema_model = load_model(tmp_path / "ckpt.pt", device="cpu")
    raw_model = load_model(tmp_path / "ckpt.pt", device="cpu", use_ema=False)
    assert not ema_model.training and ema_model.config == trainer.model.config
    assert torch.allclose(ema_model.encode(x), trainer.ema.model.encode(x))
    assert torch.allclose(raw_model.encode(x), trainer.model.encode(x))

    path = save_pretrained(trainer, tmp_path / "small.pt")
    assert path.stat().st_size < (tmp_path / "ckpt.pt").stat().st_size / 3
    loaded = load_model(path, device="cpu")
    assert next(loaded.parameters()).dtype == torch.float32
    assert torch.allclose(loaded.encode(x), trainer.ema.model.encode(x), atol=2e-2)


def test_load_model_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope" / "ckpt.pt"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_model(missing)


def test_dataset_smaller_than_batch(tmp_path):
    model = DiffAE.from_config(model_config())
    with pytest.raises(ValueError, match="batch_size=8"):
        Trainer(model, blobs(4), train_config(), tmp_path)


def test_data_workers_are_capped_at_the_available_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(usdiff.train, "available_cpus", lambda: 2)
    assert make_trainer(tmp_path, train_kw={"num_workers": 4}).num_workers == 2
    assert make_trainer(tmp_path, train_kw={"num_workers": 1}).num_workers == 1
    assert 1 <= usdiff.train.available_cpus()


def test_train_config_validation():
    with pytest.raises(ValueError, match="TrainConfig.lr"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="TrainConfig.batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="total_steps and TrainConfig.epochs"):
        TrainConfig(total_steps=None, epochs=None)


def test_paper_config_uses_the_study_ema_without_warmup():
    _, paper = get_config("paper")
    assert paper.ema_decay == 0.9999 and paper.ema_warmup is False   # the study's code has no warm-up
    _, tiny = get_config("tiny")
    assert tiny.ema_warmup                                            # short runs keep it


def test_min_snr_weights_closed_form():
    from usdiff.model.diffae import min_snr_weights

    ab = torch.tensor([0.5, 5 / 6, 0.99, 0.1])           # SNR 1, 5, 99, 1/9
    w = min_snr_weights(ab, gamma=5.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0, 5 / 99, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="gamma must be > 0"):
        min_snr_weights(ab, gamma=0)


def _tiny_model(seed=0):
    cfg = DiffAEConfig(image_size=16, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                       z_dim=8, enc_channel_mult=(1, 2), T=100)
    torch.manual_seed(seed)
    return DiffAE.from_config(cfg)


def test_min_snr_loss_reweights_the_same_draws():
    from usdiff.model.diffae import min_snr_weights

    model, x = _tiny_model(), torch.rand(6, 1, 16, 16) * 2 - 1
    uniform = model.training_loss(x, generator=torch.Generator().manual_seed(3))
    weighted = model.training_loss(x, generator=torch.Generator().manual_seed(3), weighting="min_snr", gamma=5.0)
    # reproduce by hand: same t and noise, per-image MSE times min(SNR, 5) / SNR
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, model.num_timesteps, (6,), generator=g)
    noise = torch.randn(x.shape, generator=g)
    eps = model.unet(model.scheduler.add_noise(x, noise, t), t, model.encoder(x))
    per_image = (eps - noise).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(uniform, per_image.mean())
    torch.testing.assert_close(weighted, (min_snr_weights(model.scheduler.alphas_cumprod[t], 5.0).float() * per_image).mean())
    assert weighted <= uniform
    with pytest.raises(ValueError, match="weighting must be"):
        model.training_loss(x, weighting="p2")


def test_bf16_autocast_loss_agrees_with_fp32_on_a_fixed_batch():
    model, x = _tiny_model(), torch.rand(8, 1, 16, 16) * 2 - 1
    fp32 = model.training_loss(x, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model.training_loss(x, generator=torch.Generator().manual_seed(1))
    assert bf16.dtype == torch.float32 and abs(float(bf16) - float(fp32)) < 0.03 * float(fp32)


def test_learning_rate_warms_up_linearly(tmp_path):
    data = TensorDataset(torch.rand(8, 1, 16, 16) * 2 - 1)
    cfg = TrainConfig(batch_size=4, lr=1e-3, total_steps=4, warmup_steps=4, sample_every=0, ckpt_every=0,
                      bf16_cpu=True, loss_weighting="min_snr")
    trainer = Trainer(_tiny_model(), data, cfg, tmp_path, device="cpu", progress=False)
    lrs = []
    for batch in [data.tensors[0][:4], data.tensors[0][4:]] * 2:
        trainer.train_step(batch)
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    with pytest.raises(ValueError, match="loss_weighting"):
        TrainConfig(loss_weighting="p2")


def test_ddp_on_two_gloo_processes_matches_one_process_at_the_same_effective_batch(tmp_path):
    """torchrun with 2 CPU processes x batch 8 trains like 1 process x batch 16: same losses, same weights."""
    import os
    import subprocess
    import sys

    from usdiff.data import generate_dataset

    data = generate_dataset(tmp_path / "data", n=20, size=16, seed=0, workers=1, progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    common = ["train", "--data", str(data), "--steps", "3", "--config", "tiny"]
    single = subprocess.run([sys.executable, "-m", "usdiff", *common, "--out", str(tmp_path / "one"),
                             "--batch-size", "16"], capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    dist = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "usdiff", *common, "--out", str(tmp_path / "two"), "--batch-size", "8"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert dist.returncode == 0, dist.stderr[-3000:]
    assert dist.stdout.count("trained to step 3") == 1              # one process reports (and writes)
    a = torch.load(tmp_path / "one" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "ckpt.pt", weights_only=True)
    assert a["step"] == b["step"] == 3
    torch.testing.assert_close(torch.tensor(b["history"]), torch.tensor(a["history"]), rtol=1e-4, atol=1e-5)
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-3, atol=1e-5)
