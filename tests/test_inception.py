"""InceptionV3 feature extraction (local weights only), FSD features, and folder-level FID."""
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models.inception import InceptionA

from usdiff.io import FolderOptions
from usdiff.metrics import (
    FSD_NAME,
    InceptionFeatures,
    SemanticFeatures,
    diffae_samples,
    distance_report,
    extract_features,
    fid_folders,
    find_inception_weights,
)
from usdiff.metrics.inception import (
    FID_WEIGHTS_NAME,
    FID_WEIGHTS_URL,
    TORCHVISION_WEIGHTS_NAME,
    TORCHVISION_WEIGHTS_URL,
    WEIGHTS_ENV,
    _FIDInceptionA,
    build_inception,
)


@pytest.fixture(autouse=True)
def no_weights_env(monkeypatch, tmp_path):
    """Every test starts with no weights anywhere: empty TORCH_HOME, no env override."""
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)


@pytest.fixture(scope="module")
def fid_kind_file(tmp_path_factory):
    """A state dict with the FID network's layout (random values)."""
    torch.manual_seed(1)
    net = build_inception("fid")
    path = tmp_path_factory.mktemp("w") / "random_fid_layout.pth"
    torch.save(net.state_dict(), path)
    return path, net.Conv2d_4a_3x3.conv.weight.detach().clone()


@pytest.fixture(scope="module")
def random_pool2():
    return InceptionFeatures("pool2", weights="random", device="cpu")


def test_missing_weights_message_says_what_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        InceptionFeatures("pool2")
    msg = str(err.value)
    for needed in (FID_WEIGHTS_NAME, TORCHVISION_WEIGHTS_NAME, FID_WEIGHTS_URL, TORCHVISION_WEIGHTS_URL,
                   WEIGHTS_ENV, str(tmp_path / "torch_home" / "hub" / "checkpoints")):
        assert needed in msg
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        find_inception_weights(tmp_path / "nope.pth")


def test_feature_shapes_with_random_weights(random_pool2):
    x = torch.rand(2, 1, 40, 40)
    f2 = random_pool2(x)
    assert f2.shape == (2, 192) and f2.dtype == torch.float32 and torch.isfinite(f2).all()
    assert "shape tests only" in random_pool2.weights_name and random_pool2.metric != "FID"
    pool3 = InceptionFeatures("pool3", weights="random", device="cpu")
    f3 = pool3(x[:1])
    assert f3.shape == (1, 2048) and torch.isfinite(f3).all()
    # pool2 keeps only the stem: far fewer parameters than pool3
    n2 = sum(p.numel() for p in random_pool2.parameters())
    n3 = sum(p.numel() for p in pool3.parameters())
    assert n2 < 0.05 * n3


def test_preprocessing_is_range_and_channel_invariant(random_pool2):
    x = torch.rand(2, 1, 32, 32)
    in_model_range = InceptionFeatures("pool2", weights="random", device="cpu", value_range=(-1, 1))
    torch.testing.assert_close(random_pool2(x), in_model_range(2 * x - 1))
    torch.testing.assert_close(random_pool2(x), random_pool2(x.expand(-1, 3, -1, -1)))
    pre = random_pool2.preprocess(x)
    assert pre.shape == (2, 3, 299, 299) and pre.min() >= -1 and pre.max() <= 1
    with pytest.raises(ValueError, match="images must be"):
        random_pool2(torch.rand(2, 2, 8, 8))
    with pytest.raises(ValueError, match="layer"):
        InceptionFeatures("pool4", weights="random")


def test_fid_network_is_recognised_by_content_not_layout(fid_kind_file, monkeypatch):
    import usdiff.metrics.inception as inception

    path, _ = fid_kind_file
    with pytest.warns(UserWarning, match="not comparable to published FID"):
        ext = InceptionFeatures("pool2", weights=path, device="cpu")
    assert ext.metric != "FID" and "not FID-comparable" in ext.metric    # random weights, FID layout
    monkeypatch.setattr(inception, "FID_SHA256_PREFIX", inception.file_sha256(path)[:8])
    assert InceptionFeatures("pool2", weights=path, device="cpu").metric == "FID"


def test_load_fid_layout_by_path_env_and_torch_home(fid_kind_file, monkeypatch, tmp_path):
    import usdiff.metrics.inception as inception

    path, conv_weight = fid_kind_file
    monkeypatch.setattr(inception, "FID_SHA256_PREFIX", inception.file_sha256(path)[:8])
    ext = InceptionFeatures("pool2", weights=path, device="cpu")
    assert ext.kind == "fid" and ext.metric == "FID" and path.name in ext.weights_name
    torch.testing.assert_close(ext.blocks[5].conv.weight, conv_weight)  # Conv2d_4a_3x3 loaded
    # environment variable, then the torch hub checkpoint folder under its expected name
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    assert find_inception_weights() == path
    monkeypatch.delenv(WEIGHTS_ENV)
    ckpt_dir = tmp_path / "torch_home" / "hub" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / FID_WEIGHTS_NAME).symlink_to(path)
    assert find_inception_weights() == ckpt_dir / FID_WEIGHTS_NAME


def test_torchvision_layout_is_detected_and_warned(tmp_path):
    torch.manual_seed(2)
    net = build_inception("torchvision", aux_logits=True)  # the real file has the aux head
    path = tmp_path / TORCHVISION_WEIGHTS_NAME
    torch.save(net.state_dict(), path)
    with pytest.warns(UserWarning, match="not comparable to published FID"):
        ext = InceptionFeatures("pool2", weights=path, device="cpu")
    assert ext.kind == "torchvision" and "torchvision" in ext.weights_name and ext.metric != "FID"
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(10, 2048), "Conv2d_1a_3x3.conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="unrecognised"):
        InceptionFeatures("pool2", weights=bad)


def test_fid_blocks_share_keys_but_pool_like_tensorflow():
    fid_keys = set(build_inception("fid").state_dict())
    tv_keys = set(build_inception("torchvision").state_dict())
    assert fid_keys == tv_keys  # same parameters, so both files load strictly
    torch.manual_seed(0)
    tf_block, tv_block = _FIDInceptionA(8, pool_features=4).eval(), InceptionA(8, pool_features=4).eval()
    tv_block.load_state_dict(tf_block.state_dict())
    x = torch.ones(1, 8, 7, 7)
    pool_tf, pool_tv = tf_block(x)[:, -4:], tv_block(x)[:, -4:]
    # TensorFlow's average pool ignores padding: a constant input stays constant up to the border
    assert torch.allclose(pool_tf, pool_tf[..., 3:4, 3:4].expand_as(pool_tf), atol=1e-6)
    assert not torch.allclose(pool_tv, pool_tv[..., 3:4, 3:4].expand_as(pool_tv), atol=1e-3)
    torch.testing.assert_close(tf_block(x)[:, :-4], tv_block(x)[:, :-4])  # other branches identical


def test_extract_features_from_tensor_dataset_and_loader(random_pool2):
    x = torch.rand(3, 1, 24, 24)
    ref = extract_features(random_pool2, x, batch_size=2, progress=False)
    assert ref.shape == (3, 192) and ref.dtype == np.float64
    ds = torch.utils.data.TensorDataset(x, torch.zeros(3))
    loader = torch.utils.data.DataLoader(ds, batch_size=3)
    np.testing.assert_allclose(extract_features(random_pool2, loader, progress=False), ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(extract_features(random_pool2, ds, batch_size=1, progress=False), ref,
                               rtol=1e-5, atol=1e-7)
    assert extract_features(random_pool2, x, n=2, progress=False).shape == (2, 192)


def test_fid_folders_report(fid_kind_file, tmp_path, monkeypatch):
    import usdiff.metrics.inception as inception

    monkeypatch.setattr(inception, "FID_SHA256_PREFIX", inception.file_sha256(fid_kind_file[0])[:8])
    rng = np.random.default_rng(0)
    for name, offset in (("real", 0), ("fake", 80)):
        (tmp_path / name).mkdir()
        for i in range(3):
            arr = np.clip(rng.integers(0, 170, (20, 20)) + offset, 0, 255).astype(np.uint8)
            Image.fromarray(arr, mode="L").save(tmp_path / name / f"{i}.png")
    with pytest.warns(UserWarning, match="only 3 images"):
        report = fid_folders(tmp_path / "real", tmp_path / "fake", weights=fid_kind_file[0], n=5,
                             options=FolderOptions(batch_size=2, device="cpu"), kid_subsets=4, progress=False)
    assert report["metric"] == "FID" and report["layer"] == "pool2" and report["dim"] == 192
    assert report["n_real"] == report["n_fake"] == 3 and report["fd"] > 0
    json.dumps(report)
    with pytest.raises(FileNotFoundError, match="real_dir"):
        fid_folders(tmp_path / "absent", tmp_path / "fake", weights=fid_kind_file[0])
    with pytest.raises(TypeError, match="unexpected keyword argument 'device'"):   # device and fit live in options
        fid_folders(tmp_path / "real", tmp_path / "fake", weights=fid_kind_file[0], device="cpu")


class ToyDiffAE(nn.Module):
    """Stands in for usdiff.model.DiffAE: encode (B,1,S,S) in [-1,1] -> (B, 4); decode returns x_T."""

    def __init__(self, size=16):
        super().__init__()
        self.config = SimpleNamespace(image_size=size, z_dim=4)
        self.proj = nn.Linear(size * size, 4)
        self.seen = []

    def encode(self, x0):
        self.seen.append(x0.detach().clone())
        return self.proj(x0.flatten(1))

    def decode(self, x_t, z_sem, steps=20, eta=0.0, progress=False):
        assert steps == 20 and z_sem.shape == (len(x_t), 4)
        return x_t.clamp(-1, 1)


def test_semantic_features_feed_the_encoder_its_own_input_format():
    torch.manual_seed(0)
    model = ToyDiffAE(size=16)
    ext = SemanticFeatures(model)  # inputs in [0, 1]
    x = torch.rand(5, 1, 16, 16)
    z = ext(x)
    assert z.shape == (5, 4) and ext.dim == 4
    torch.testing.assert_close(model.seen[-1], 2 * x - 1)  # [0, 1] -> the model range [-1, 1]
    x = torch.rand(5, 1, 40, 40)
    ext(x)
    assert model.seen[-1].shape == (5, 1, 16, 16)  # resized to config.image_size
    assert ext.metric == FSD_NAME and "FID" not in ext.metric
    report = distance_report(x, torch.rand(5, 1, 40, 40) * 0.5, ext, kid_subsets=3)
    assert report["metric"].startswith("FSD") and report["dim"] == 4 and report["fd"] > 0
    with pytest.raises(TypeError, match="encode"):
        SemanticFeatures(nn.Linear(2, 2))


def test_diffae_samples_use_random_x_t_per_seed():
    model = ToyDiffAE(size=16)
    held_out = torch.rand(6, 1, 16, 16) * 2 - 1
    a = diffae_samples(model, held_out, steps=20, batch_size=4, seed=0)
    b = diffae_samples(model, held_out, steps=20, batch_size=4, seed=0)
    c = diffae_samples(model, held_out, steps=20, batch_size=4, seed=1)
    assert a.shape == (6, 1, 16, 16) and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="images must be"):
            diffae_samples(model, torch.rand(6, 2, 16, 16))
        with pytest.raises(ValueError, match="prior must be"):
            diffae_samples(model, held_out, prior="uniform")
