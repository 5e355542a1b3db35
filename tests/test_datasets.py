import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import usdiff.data.datasets as ds
from usdiff.data import (
    DOMAINS,
    REAL,
    SIM,
    TISSUES,
    BuiltinDataset,
    TwoDomainDataset,
    USImageFolder,
    ensure_dataset,
    generate_dataset,
    is_builtin_folder,
    item_seed,
    load_manifest,
    make_phantom,
)

N, SIZE = 10, 64


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("data") / "builtin", n=N, size=SIZE, seed=3, workers=1,
                            progress=False)


def _tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _save(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


# ---- generation ---------------------------------------------------------------------------------

def test_generate_writes_the_layout_and_manifest(builtin):
    names = [f"{i:06d}.png" for i in range(N)]
    for folder in ("sim", "real", "labels"):
        assert sorted(os.listdir(builtin / folder)) == names
    with Image.open(builtin / "sim" / names[0]) as img:
        assert img.mode == "L" and img.size == (SIZE, SIZE)
    manifest = load_manifest(builtin)
    assert (manifest["n"], manifest["size"], manifest["seed"], manifest["version"]) == (N, SIZE, 3, 1)
    assert [it["id"] for it in manifest["items"]] == [n[:-4] for n in names]
    assert [it["seed"] for it in manifest["items"]] == [item_seed(3, i) for i in range(N)]
    assert sum(manifest["counts"].values()) == N and manifest["counts"]["train"] == 8
    assert manifest["tissues"] == TISSUES
    # the label PNG is the phantom of the item's seed
    labels = np.asarray(Image.open(builtin / "labels" / names[4]))
    assert np.array_equal(labels, make_phantom(item_seed(3, 4), SIZE).labels)


def test_generation_is_byte_identical_and_seed_dependent(builtin, tmp_path):
    again = generate_dataset(tmp_path / "again", n=N, size=SIZE, seed=3, workers=1, progress=False)
    assert _tree_bytes(again) == _tree_bytes(builtin)
    other = generate_dataset(tmp_path / "other", n=N, size=SIZE, seed=4, workers=1, progress=False)
    a, b = _tree_bytes(other), _tree_bytes(builtin)
    assert a["sim/000000.png"] != b["sim/000000.png"] and a["real/000000.png"] != b["real/000000.png"]


def test_worker_processes_give_the_same_bytes(tmp_path):
    one = generate_dataset(tmp_path / "one", n=70, size=24, seed=1, workers=1, progress=False)
    two = generate_dataset(tmp_path / "two", n=70, size=24, seed=1, workers=2, progress=False)
    assert _tree_bytes(one) == _tree_bytes(two)


def test_ensure_dataset_reuses_or_regenerates(builtin, tmp_path, capsys):
    stamp = (builtin / "manifest.json").stat().st_mtime_ns
    assert ensure_dataset(builtin, n=N, size=SIZE, seed=3, progress=False) == builtin
    assert "reusing" in capsys.readouterr().out
    assert (builtin / "manifest.json").stat().st_mtime_ns == stamp

    root = generate_dataset(tmp_path / "d", n=6, size=32, seed=0, workers=1, progress=False)
    ensure_dataset(root, n=4, size=32, seed=0, progress=False)
    out = capsys.readouterr().out
    assert "generating" in out and "n=6, wanted 4" in out
    assert sorted(os.listdir(root / "real")) == [f"{i:06d}.png" for i in range(4)]   # stale files gone
    (root / "sim" / "000002.png").unlink()
    ensure_dataset(root, n=4, size=32, seed=0, progress=False)
    assert "holds 3 images" in capsys.readouterr().out
    assert (root / "sim" / "000002.png").is_file()
    (tmp_path / ".new.k1ll3d_x").mkdir()                    # left by a generation that was killed
    (tmp_path / ".new.backup").mkdir()                      # a user's folder: not mkdtemp's name
    ensure_dataset(tmp_path / "new", n=2, size=32, seed=0, progress=False)
    out = capsys.readouterr().out
    assert "does not exist yet" in out and ".new.k1ll3d_x beside" in out and ".new.backup" not in out
    assert (tmp_path / ".new.k1ll3d_x").is_dir()              # named, not deleted: it may be another process's


def test_a_folder_holding_anything_else_is_never_written_into(tmp_path, capsys):
    """generate_dataset / ensure_dataset write only into a new or empty folder or an earlier built-in
    data set (the marker or a built-in manifest): a user's own files are never overwritten or deleted."""
    own = tmp_path / "own"
    (own / "sim").mkdir(parents=True)
    (own / "sim" / "000000.png").write_bytes(b"a user's image")      # same name as a built-in file
    (own / "sim" / "000009.png").write_bytes(b"another")            # would be 'stale' for n=4
    before = _tree_bytes(own)
    with pytest.raises(FileExistsError, match="not a usdiff built-in data set"):
        generate_dataset(own, n=4, size=24, seed=0, workers=1, progress=False, overwrite=True)
    with pytest.raises(FileExistsError, match="not a usdiff built-in data set"):
        ensure_dataset(own, n=4, size=24, seed=0, workers=1, progress=False)
    assert "generating" not in capsys.readouterr().out and _tree_bytes(own) == before
    assert not is_builtin_folder(own)
    (own / "notes.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="notes.txt exists and is not a directory"):
        ensure_dataset(own / "notes.txt", n=4, size=24, seed=0, progress=False)
    assert "generating" not in capsys.readouterr().out

    made = generate_dataset(tmp_path / "made", n=4, size=24, seed=0, workers=1, progress=False)
    assert is_builtin_folder(made)
    with pytest.raises(FileExistsError, match="overwrite=True"):             # an earlier data set: asked for
        generate_dataset(made, n=3, size=24, seed=0, workers=1, progress=False)
    assert load_manifest(made)["n"] == 4
    (made / "mine.txt").write_text("kept")
    generate_dataset(made, n=3, size=24, seed=0, workers=1, progress=False, overwrite=True)
    assert load_manifest(made)["n"] == 3 and (made / "mine.txt").read_text() == "kept"

    # an interrupted generation (marker, no manifest) and a complete data set without the marker
    # (manifest only) count as built-in
    (made / "manifest.json").unlink()
    assert is_builtin_folder(made)
    ensure_dataset(made, n=3, size=24, seed=0, workers=1, progress=False)
    assert "no manifest.json" in capsys.readouterr().out and load_manifest(made)["n"] == 3
    (made / ".usdiff-builtin").unlink()
    assert is_builtin_folder(made)
    (made / "manifest.json").write_text("{broken")
    assert not is_builtin_folder(made)


def test_a_new_data_set_appears_only_when_complete(tmp_path, monkeypatch, capsys):
    """ensure_dataset writes a new data set beside `root` and renames it into place, so that notebooks
    run side by side never read each other's half-written files; a process that loses the race uses
    the winner's identical copy."""
    import pathlib

    import usdiff.data.generate as gen

    real_generate, calls = gen.generate_dataset, []

    def watched(out, **kw):
        calls.append((pathlib.Path(out), (tmp_path / "shared").exists()))
        return real_generate(out, **kw)

    monkeypatch.setattr(gen, "generate_dataset", watched)
    root = gen.ensure_dataset(tmp_path / "shared", n=6, size=24, seed=2, workers=1, progress=False)
    [(written_to, root_existed)] = calls
    assert written_to != root and written_to.parent == tmp_path and not root_existed
    direct = real_generate(tmp_path / "direct", n=6, size=24, seed=2, workers=1, progress=False)
    assert _tree_bytes(root) == _tree_bytes(direct)
    assert root.stat().st_mode & 0o777 == direct.stat().st_mode & 0o777      # as readable as a folder made directly
    (tmp_path / "empty").mkdir()                                             # an empty folder counts as new
    gen.ensure_dataset(tmp_path / "empty", n=6, size=24, seed=2, workers=1, progress=False)
    assert calls[-1][0] != tmp_path / "empty" and _tree_bytes(tmp_path / "empty") == _tree_bytes(direct)

    def loses_the_race(out, **kw):             # another process finishes the same data set meanwhile
        real_generate(out, **kw)
        real_generate(tmp_path / "late", **kw)
        return out

    monkeypatch.setattr(gen, "generate_dataset", loses_the_race)
    capsys.readouterr()
    gen.ensure_dataset(tmp_path / "late", n=6, size=24, seed=2, workers=1, progress=False)
    assert "another process wrote the same data set" in capsys.readouterr().out
    assert _tree_bytes(tmp_path / "late") == _tree_bytes(direct)

    def loses_to_another_set(out, **kw):       # ... or a different one: said, not silently used
        real_generate(out, **kw)
        real_generate(tmp_path / "other", **{**kw, "n": 4})
        return out

    monkeypatch.setattr(gen, "generate_dataset", loses_to_another_set)
    with pytest.raises(FileExistsError, match="appeared while this data set was being generated"):
        gen.ensure_dataset(tmp_path / "other", n=6, size=24, seed=2, workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["direct", "empty", "late", "other", "shared"]   # no leftovers


def test_manifest_and_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_manifest(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a usdiff built-in"):
        load_manifest(tmp_path)
    with pytest.raises(ValueError, match="n must be >= 1"):
        generate_dataset(tmp_path / "x", n=0)
    with pytest.raises(ValueError, match="size must be >= 16"):
        generate_dataset(tmp_path / "x", n=2, size=8)
    with pytest.raises(ValueError, match="splits"):
        generate_dataset(tmp_path / "x", n=2, splits=(0.5, 0.1, 0.1))


# ---- BuiltinDataset -----------------------------------------------------------------------------

def test_builtin_dataset_items_splits_and_pairs(builtin):
    parts = {s: BuiltinDataset(builtin, split=s, domain="sim", size=SIZE) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == N
    assert set().union(*(p.ids for p in parts.values())) == {f"{i:06d}" for i in range(N)}
    both = BuiltinDataset(builtin, split="all", domain="both", size=SIZE)
    assert len(both) == 2 * N
    assert both.domains.tolist() == [SIM] * N + [REAL] * N
    for k in (0, N - 1, N, 2 * N - 1):
        image, domain = both[k]
        assert image.shape == (1, SIZE, SIZE) and image.dtype == torch.float32
        assert image.min() >= -1 and image.max() <= 1 and domain == both.domains[k]
    sim, real, labels = both.pair(N + 2)                # same phantom as index 2
    assert torch.equal(sim, both[2][0]) and torch.equal(real, both[N + 2][0])
    assert np.array_equal(labels, np.asarray(Image.open(builtin / "labels" / "000002.png")))
    assert not torch.equal(sim, real)
    png = np.asarray(Image.open(builtin / "real" / "000002.png"), dtype=np.float32)
    assert torch.allclose(real[0], torch.from_numpy(png / 255 * 2 - 1), atol=1e-6)
    with pytest.raises(IndexError, match=f"index {2 * N} out of range for a dataset of {2 * N}"):
        both[2 * N]


def test_builtin_dataset_resizes_images_and_label_maps(builtin):
    small = BuiltinDataset(builtin, split="all", domain="real", size=32)
    image, domain = small[0]
    assert image.shape == (1, 32, 32) and domain == REAL and small.domains.tolist() == [REAL] * N
    labels = small.label_map(0)
    assert labels.shape == (32, 32) and labels.dtype == np.uint8
    full = np.asarray(Image.open(builtin / "labels" / "000000.png"))
    assert np.array_equal(labels, full[1::2, 1::2])     # nearest neighbour: no new label values


def test_builtin_dataset_errors(builtin, tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        BuiltinDataset(builtin, split="training")
    with pytest.raises(ValueError, match="domain must be"):
        BuiltinDataset(builtin, domain="fake")
    with pytest.raises(ValueError, match="size must be an int"):
        BuiltinDataset(builtin, size=4)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BuiltinDataset(tmp_path / "missing")
    copy = generate_dataset(tmp_path / "c", n=3, size=32, seed=0, workers=1, progress=False)
    (copy / "real" / "000001.png").unlink()
    BuiltinDataset(copy, split="all", domain="sim", size=32)             # sim side still complete
    with pytest.raises(FileNotFoundError, match=r"real lacks 1 .*000001\.png"):
        BuiltinDataset(copy, split="all", domain="both", size=32)


# ---- USImageFolder / TwoDomainDataset -----------------------------------------------------------

def test_image_folder_converts_modes_and_scales(tmp_path):
    _save(tmp_path / "a_gray.png", np.full((20, 30), 255, np.uint8))
    _save(tmp_path / "b_rgb.jpg", np.zeros((40, 40, 3), np.uint8))
    _save(tmp_path / "c_rgba.png", np.full((16, 16, 4), 255, np.uint8))
    _save(tmp_path / "d_16bit.tif", np.full((16, 16), 65535, np.uint16))
    _save(tmp_path / "e_bmp.BMP", np.full((50, 20), 0, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image, not listed")
    folder = USImageFolder(tmp_path, domain="sim", size=16, fit="crop")
    assert [p.name for p in folder.files] == ["a_gray.png", "b_rgb.jpg", "c_rgba.png", "d_16bit.tif", "e_bmp.BMP"]
    values = []
    for image, domain in folder:
        assert image.shape == (1, 16, 16) and image.dtype == torch.float32 and domain == SIM
        values.append(float(image.mean()))
    assert values == pytest.approx([1.0, -1.0, 1.0, 1.0, -1.0], abs=0.02)
    assert folder.domains.tolist() == [SIM] * 5
    assert USImageFolder(tmp_path, domain=1, size=16)[0][1] == REAL == DOMAINS["real"]


def test_resize_shorter_side_then_centre_crop(tmp_path):
    # 30 x 60 image: white side bands, black centre; after the shorter side -> 16 the 16x16 centre
    # crop keeps only the black middle (original columns 15..44)
    img = np.zeros((30, 60), np.uint8)
    img[:, :12] = 255
    img[:, 48:] = 255
    _save(tmp_path / "wide.png", img)
    out = USImageFolder(tmp_path, size=16, fit="crop")[0][0][0]
    assert out.shape == (16, 16)
    assert float(out[:, 2:-2].max()) < -0.99
    tall = np.zeros((64, 16), np.uint8)
    tall[:8] = 255
    _save(tmp_path / "wide.png", tall)
    assert float(USImageFolder(tmp_path, size=16, fit="crop")[0][0].max()) < -0.99


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        USImageFolder(tmp_path / "nowhere")
    _save(tmp_path / "one.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="one.png is a file, not a folder"):
        USImageFolder(tmp_path / "one.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no images with extensions .* \(it is empty\)"):
        USImageFolder(empty)
    (empty / "readme.txt").write_text("hi")
    (empty / "data.csv").write_text("1,2")
    with pytest.raises(ValueError, match=r"2 other files \(.csv, .txt\)"):
        USImageFolder(empty)
    for bad in ("128", 4, True, 12.0):
        with pytest.raises(ValueError, match="size must be an int >= 8"):
            USImageFolder(tmp_path, size=bad)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            USImageFolder(tmp_path, n=bad)
    with pytest.raises(ValueError, match=r"value_range must be \(-1, 1\) or \(0, 1\)"):
        USImageFolder(tmp_path, value_range=(0, 255))
    with pytest.raises(FileNotFoundError, match="real_dir .*nowhere does not exist"):
        USImageFolder(tmp_path / "nowhere", what="real_dir")
    for bad in ("fake", 2, True, None):
        with pytest.raises(ValueError, match="domain must be"):
            USImageFolder(tmp_path, domain=bad)
    with pytest.raises(ValueError, match="extensions"):
        USImageFolder(tmp_path, extensions=())


def test_corrupt_files_are_named(tmp_path):
    _save(tmp_path / "good.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "bad.png").write_bytes(b"this is not a png at all")
    with pytest.raises(ValueError, match=r"bad\.png is not a readable image"):
        USImageFolder(tmp_path, size=8)
    # truncated image: caught when the folder is listed
    buf = (tmp_path / "good.png").read_bytes()
    (tmp_path / "bad.png").write_bytes(buf[: len(buf) // 2])
    with pytest.raises(ValueError, match=r"bad\.png is not a readable image"):
        USImageFolder(tmp_path, size=8)
    # a file that breaks after the listing: caught when it is read
    _save(tmp_path / "bad.png", np.zeros((8, 8), np.uint8))
    folder = USImageFolder(tmp_path, size=8)
    (tmp_path / "bad.png").write_bytes(buf[: len(buf) // 2])
    with pytest.raises(ValueError, match=r"bad\.png is not a readable image"):
        folder[0]
    assert folder[1][0].shape == (1, 8, 8)


def test_unreadable_files_raise_permission_errors(tmp_path, monkeypatch):
    path = _save(tmp_path / "locked.png", np.zeros((8, 8), np.uint8))
    listed = USImageFolder(tmp_path, size=8)
    os.chmod(path, 0)
    try:
        blocked = not os.access(path, os.R_OK)
        if not blocked:
            # running as root: permissions do not block reads, so simulate the failing open
            real_open = ds.Image.open

            def deny(fp, *args, **kwargs):
                if str(fp).endswith("locked.png"):
                    raise PermissionError(13, "Permission denied", str(fp))
                return real_open(fp, *args, **kwargs)

            monkeypatch.setattr(ds.Image, "open", deny)
        with pytest.raises(PermissionError, match=r"cannot read image .*locked\.png"):
            USImageFolder(tmp_path, size=8)
        with pytest.raises(PermissionError, match=r"locked\.png"):
            listed[0]
    finally:
        os.chmod(path, 0o644)
    # an unlistable folder
    monkeypatch.setattr(ds.os, "access", lambda p, mode: False)
    with pytest.raises(PermissionError, match="cannot be listed"):
        USImageFolder(tmp_path, size=8)


def test_image_folder_reads_for_the_judges_and_keeps_sizes(tmp_path):
    for i, shape in enumerate(((12, 12), (12, 12), (20, 16))):
        _save(tmp_path / f"{i}.png", np.full(shape, 51 * i, np.uint8))
    judged = USImageFolder(tmp_path, size=8, n=2, value_range=(0, 1))
    assert len(judged) == 2 and [f.name for f in judged.files] == ["0.png", "1.png"]
    x = judged.images()
    assert x.shape == (2, 1, 8, 8) and x.dtype == torch.float32
    assert torch.equal(x[1, 0], torch.full((8, 8), 51 / 255))
    model = USImageFolder(tmp_path, size=8, n=2).images()
    assert torch.equal(model, x * 2 - 1)
    native = USImageFolder(tmp_path, size=None, n=2)
    assert native.images().shape == (2, 1, 12, 12)
    with pytest.raises(ValueError, match="different sizes"):
        USImageFolder(tmp_path, size=None).images()


def test_label_maps_are_read_and_resized_at_pixel_centres(tmp_path):
    from PIL import Image

    from usdiff.data.datasets import read_label_map, resize_label_maps

    labels = np.arange(16, dtype=np.uint8).reshape(4, 4)
    Image.fromarray(labels, mode="L").save(tmp_path / "l.png")
    assert np.array_equal(read_label_map(tmp_path / "l.png"), labels)
    half = read_label_map(tmp_path / "l.png", 2)
    assert half.tolist() == [[5, 7], [13, 15]]           # the label under each output pixel's centre
    assert np.array_equal(resize_label_maps(labels[None], 2)[0], half)
    assert np.array_equal(resize_label_maps(torch.from_numpy(labels), 8)[::2, ::2], labels)
    assert resize_label_maps(labels, (2, 4)).shape == (2, 4)
    assert resize_label_maps(labels, 4) is not labels and resize_label_maps(labels, 4).dtype == np.uint8
    with pytest.raises(ValueError, match="labels in 0..255"):
        resize_label_maps(np.full((4, 4), 300), 2)
    (tmp_path / "x.png").write_text("no image")
    with pytest.raises(ValueError, match=r"x\.png is not a readable label map"):
        read_label_map(tmp_path / "x.png")


def test_two_domain_dataset(tmp_path):
    (tmp_path / "sim").mkdir()
    for i in range(3):
        _save(tmp_path / "sim" / f"{i}.png", np.full((12, 12), 10 * i, np.uint8))
    with pytest.raises(FileNotFoundError, match=r"missing: .*real"):
        TwoDomainDataset(tmp_path, size=8)
    (tmp_path / "real").mkdir()
    with pytest.raises(ValueError, match=r"no images .* in .*real"):
        TwoDomainDataset(tmp_path, size=8)
    for i in range(2):
        _save(tmp_path / "real" / f"{i}.jpg", np.full((12, 12, 3), 200, np.uint8))
    data = TwoDomainDataset(tmp_path, size=8)
    assert len(data) == 5 and data.domains.tolist() == [SIM, SIM, SIM, REAL, REAL]
    assert [data[i][1] for i in range(5)] == data.domains.tolist()
    assert data[4][0].shape == (1, 8, 8) and len(data.files) == 5
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TwoDomainDataset(tmp_path / "nope")


def test_pad_keeps_the_whole_frame_and_restore_size_inverts_it(tmp_path):
    from usdiff.data.datasets import read_image, resize_pad, restore_size

    frame = np.full((20, 40), 255, np.uint8)                  # a landscape frame, all bright
    frame[:, :4] = 0                                          # a dark left edge that a centre crop would cut
    _save(tmp_path / "f.png", frame)
    padded = read_image(tmp_path / "f.png", 20, fit="pad")[0].numpy()
    cropped = read_image(tmp_path / "f.png", 20, fit="crop")[0].numpy()
    assert padded[:4].max() < 0.05 and padded[-4:].max() < 0.05   # zero bands top and bottom (pad 10+10 of 40 -> 5+5 of 20)
    assert padded[10, 0] < 0.1                                # the dark left edge survives padding
    assert cropped[:, :2].min() > 0.9                         # ...but not the centre crop
    back = restore_size(resize_pad(frame.astype(np.float32) / 255, 20), (20, 40), "pad")
    assert back.shape == (20, 40) and np.abs(back[2:-2, 8:] - 1).max() < 0.05   # edge rows blend with the pad
    with pytest.raises(ValueError, match="fit must be 'pad' or 'crop'"):
        USImageFolder(tmp_path, size=16, fit="stretch")
