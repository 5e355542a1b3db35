import numpy as np
import pytest
import torch
from PIL import Image

from usdiff.io import save_batch, save_png, to_uint8
from usdiff.utils import (
    as_image_batch,
    check_matrix,
    from_model_range,
    get_device,
    to_model_range,
    to_unit_range,
    unit_images,
)
from usdiff.viz import show_grid, to_numpy_images


def test_model_range_round_trip_and_endpoints():
    x = torch.linspace(0, 1, 11)
    assert torch.allclose(from_model_range(to_model_range(x)), x)
    assert to_model_range(torch.tensor([0.0, 0.5, 1.0])).tolist() == [-1.0, 0.0, 1.0]
    assert from_model_range(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]


def test_unit_range_of_any_range_for_tensors_and_arrays():
    assert to_unit_range(torch.tensor([0.0, 127.5, 300.0]), (0.0, 255.0)).tolist() == [0.0, 0.5, 1.0]
    out = to_unit_range(np.array([-2.0, 0.0, 1.0], np.float32), (-1.0, 1.0))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.tolist() == [0.0, 0.5, 1.0]
    assert from_model_range(np.array([-1.0, 1.0])).tolist() == [0.0, 1.0]


def test_image_batches_are_coerced_or_refused_with_the_name():
    x = as_image_batch(np.zeros((2, 4, 4), np.float64), "sim")
    assert x.shape == (2, 1, 4, 4) and x.dtype == torch.float32
    t = torch.zeros(3, 1, 4, 4)
    assert as_image_batch(t) is t and as_image_batch(t, channels=(1, 3)).shape == (3, 1, 4, 4)
    assert as_image_batch([[[[0.5]]]]).shape == (1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"sim must be an image batch \(B, 1, H, W\), got shape \(2, 3, 4, 4\)"):
        as_image_batch(torch.zeros(2, 3, 4, 4), "sim")
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\), got shape \(4, 4\)"):
        as_image_batch(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="x needs at least 4 images, got 2"):
        as_image_batch(torch.zeros(2, 1, 4, 4), "x", min_count=4)
    assert len(as_image_batch(torch.zeros(0, 1, 4, 4), min_count=0)) == 0
    with pytest.raises(ValueError, match=r"x must hold finite values in \[-1, 1\] \(the model range\)"):
        as_image_batch(torch.full((1, 1, 2, 2), 1.5), "x", value_range=(-1.0, 1.0))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        as_image_batch(torch.full((1, 1, 2, 2), float("nan")), value_range=(0.0, 1.0))
    assert as_image_batch(torch.full((1, 1, 2, 2), 1.0005), value_range=(-1.0, 1.0)).max() > 1   # round-off passes


def test_get_device_defaults_to_cpu_without_cuda(monkeypatch):
    monkeypatch.delenv("USDIFF_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_device().type == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        get_device("cuda")


def test_to_uint8_maps_model_range_to_bytes():
    img = torch.tensor([[[-1.0, 0.0, 1.0, 2.0]]])
    assert to_uint8(img).tolist() == [[0, 128, 255, 255]]
    with pytest.raises(ValueError, match="1 channel"):
        to_uint8(torch.zeros(3, 4, 4))


def test_save_png_and_batch_round_trip(tmp_path):
    img = torch.rand(1, 8, 8) * 2 - 1
    path = save_png(img, tmp_path / "a" / "x.png")
    back = np.asarray(Image.open(path))
    assert back.dtype == np.uint8 and back.shape == (8, 8)
    assert np.abs(back.astype(int) - to_uint8(img).astype(int)).max() == 0
    paths = save_batch(torch.zeros(2, 1, 4, 4), tmp_path / "b", ["one.jpg", "two"])
    assert [p.name for p in paths] == ["one.png", "two.png"]
    with pytest.raises(ValueError, match="2 images but 1 names"):
        save_batch(torch.zeros(2, 1, 4, 4), tmp_path, ["x"])


def test_viz_normalises_shapes_and_ranges():
    out = to_numpy_images(torch.tensor([[[[-1.0, 1.0]]]]), value_range=(-1, 1))
    assert out.shape == (1, 1, 2) and out.tolist() == [[[0.0, 1.0]]]
    with pytest.raises(ValueError, match="1 channel"):
        to_numpy_images(np.zeros((2, 3, 4, 4)))
    fig = show_grid(np.zeros((5, 4, 4)), titles=list("abcde"), ncols=3)
    assert len(fig.axes) == 6


def test_unit_images_rescales_clamps_and_resizes():
    x = torch.tensor([[[[-1.0, 0.0], [1.0, 3.0]]]])
    out = unit_images(x, (-1.0, 1.0), 2, torch.device("cpu"))
    assert out.dtype == torch.float32 and out.tolist() == [[[[0.0, 0.5], [1.0, 1.0]]]]
    const = unit_images(torch.full((2, 3, 5, 7), 0.25), (0.0, 1.0), 9, torch.device("cpu"))
    assert const.shape == (2, 3, 9, 9) and torch.allclose(const, torch.full_like(const, 0.25))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\) or \(B, 3, H, W\), got shape \(2, 2, 4, 4\)"):
        unit_images(torch.zeros(2, 2, 4, 4), (0.0, 1.0), 4, torch.device("cpu"))


def test_check_matrix_names_the_argument():
    z = check_matrix(torch.ones(3, 2, dtype=torch.float16), "codes", min_rows=3)
    assert z.dtype == np.float64 and z.shape == (3, 2)
    for bad, msg in ((np.ones(3), "codes must be a 2-D"), (np.ones((2, 4)), "codes needs at least 3 samples"),
                     (np.ones((3, 0)), "at least one column"), (np.array([[1.0], [np.nan], [0.0]]), "codes contains NaN"),
                     ([["a"], ["b"], ["c"]], "codes must be numeric")):
        with pytest.raises(ValueError, match=msg):
            check_matrix(bad, "codes", min_rows=3)
