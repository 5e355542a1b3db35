"""The built-in paired data set: simulated and real-like images of the same random phantoms.

Layout of ``ROOT`` (index ``i`` is the same phantom in all three folders)::

    ROOT/sim/000000.png      clean simulated image, 8-bit grayscale
    ROOT/real/000000.png     real-like image, 8-bit grayscale
    ROOT/labels/000000.png   uint8 tissue labels (values of `usdiff.data.TISSUES`)
    ROOT/manifest.json       format, version, n, size, seed, splits, parameters, items
    ROOT/.usdiff-builtin     marker written first: the folder belongs to a built-in data set

Every file depends only on ``(seed, i, size)``: the same arguments give byte-identical files.
A folder is only ever written into if it is new, empty, or already a built-in data set (the marker or
a built-in manifest is there), so a folder holding anything else is never touched.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .phantom import DEPTH_MM, FRAME_MM, OPENING_DEG, PROBE_RADIUS_MM, TISSUES, make_phantom
from .render import render_real, render_sim

FORMAT = "usdiff-builtin"
MARKER = ".usdiff-builtin"
VERSION = 1
SPLITS = ("train", "val", "test")
FOLDERS = ("sim", "real", "labels")
PARAMETERS = {
    "freq_mhz": 2.0, "depth_mm": DEPTH_MM, "opening_deg": OPENING_DEG, "probe_radius_mm": PROBE_RADIUS_MM,
    "frame_mm": float(FRAME_MM), "lines": "size", "sim": "render_sim defaults",
    "real": "render_real defaults (speckle, specular, reverberation, operator gain/TGC, noise, deformation)",
}


def item_seed(seed: int, index: int) -> int:
    """Phantom (and real-like render) seed of item `index` of a data set made with `seed`."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(1)[0])


def assign_splits(n: int, seed: int, splits: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> list[str]:
    """Split name of each of `n` items: a seeded shuffle cut at the `splits` fractions."""
    fractions = _check_splits(splits)
    bounds = np.round(np.cumsum(fractions) * n).astype(int)
    order = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5B1])).permutation(n)
    names = np.empty(n, dtype=object)
    start = 0
    for name, stop in zip(SPLITS, bounds):
        names[order[start:stop]] = name
        start = stop
    return names.tolist()


def render_item(seed: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(sim, real, labels)`` uint8 arrays ``(size, size)`` of one item seed."""
    phantom = make_phantom(seed, size)
    sim = np.rint(render_sim(phantom) * 255.0).astype(np.uint8)
    real = np.rint(render_real(phantom, seed) * 255.0).astype(np.uint8)
    return sim, real, phantom.labels


def _write_chunk(job: tuple[str, int, list[int], list[int]]) -> int:
    root, size, indices, seeds = job
    root = Path(root)
    for i, s in zip(indices, seeds):
        name = f"{i:06d}.png"
        for folder, array in zip(FOLDERS, render_item(s, size)):
            Image.fromarray(array, mode="L").save(root / folder / name, compress_level=3)
    return len(indices)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_splits(splits) -> np.ndarray:
    fractions = np.asarray(splits, dtype=float)
    if fractions.shape != (3,) or np.any(fractions < 0) or abs(fractions.sum() - 1.0) > 1e-6:
        raise ValueError(f"splits must be 3 non-negative fractions (train, val, test) summing to 1, got {splits!r}")
    return fractions


def _context():
    # fork is cheap on Linux; elsewhere spawn (workers then import usdiff.data afresh).
    if sys.platform.startswith("linux"):
        return mp.get_context("fork")
    return mp.get_context("spawn")


def generate_dataset(out: str | Path, n: int = 12_000, size: int = 128, seed: int = 0,
                     splits: tuple[float, float, float] = (0.8, 0.1, 0.1), workers: int | None = None,
                     progress: bool = True, overwrite: bool = False) -> Path:
    """Render `n` paired items of `size` px into `out` (see the module doc) and return `out`.

    Item ``i`` uses phantom seed ``item_seed(seed, i)``. `workers` processes (default: up to 2
    CPUs; small jobs run in this process). The manifest is written last, so a data set with a
    manifest is complete. `out` must be new or empty; with ``overwrite=True`` it may also be an
    existing built-in data set (complete or interrupted), which is replaced: its stale numbered PNGs
    from a larger `n` are removed, other files are left alone.

    Raises:
        TypeError/ValueError: on a bad `n`, `size`, `seed`, `splits` or `workers`.
        FileExistsError: `out` is not empty and `overwrite` is False, or it holds something other
            than a built-in data set (never written into).
        NotADirectoryError: `out` is a file.
    """
    n = _check_int("n", n, 1)
    size = _check_int("size", size, 16)
    seed = _check_int("seed", seed, 0)
    fractions = _check_splits(splits)
    workers = _check_int("workers", workers if workers is not None else min(2, os.cpu_count() or 1), 1)
    root = Path(out)
    if _check_writable(root):
        if not overwrite:
            raise FileExistsError(f"{root} already holds a built-in data set: pass overwrite=True "
                                  "(`usdiff data generate --overwrite`) to replace it, or choose another folder")
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("usdiff built-in data set (see manifest.json once complete)\n")
    (root / "manifest.json").unlink(missing_ok=True)
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for stale in (root / folder).glob("[0-9][0-9][0-9][0-9][0-9][0-9].png"):
            if int(stale.stem) >= n:
                stale.unlink()

    seeds = [item_seed(seed, i) for i in range(n)]
    chunk = 32
    jobs = [(str(root), size, list(range(a, min(a + chunk, n))), seeds[a:a + chunk]) for a in range(0, n, chunk)]
    bar = partial(tqdm, total=n, desc=f"usdiff data ({size}px)", unit="pair", disable=not progress)
    if workers == 1 or n <= 2 * chunk:
        with bar() as b:
            for job in jobs:
                b.update(_write_chunk(job))
    else:
        # the pool forks before the progress bar starts its monitor thread
        with _context().Pool(min(workers, len(jobs))) as pool, bar() as b:
            for done in pool.imap_unordered(_write_chunk, jobs):
                b.update(done)

    names = assign_splits(n, seed, tuple(fractions))
    manifest = {
        "format": FORMAT, "version": VERSION, "n": n, "size": size, "seed": seed,
        "splits": dict(zip(SPLITS, fractions.tolist())),
        "counts": {s: names.count(s) for s in SPLITS},
        "parameters": PARAMETERS, "tissues": TISSUES,
        "items": [{"id": f"{i:06d}", "seed": seeds[i], "split": names[i]} for i in range(n)],
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return root


def load_manifest(root: str | Path) -> dict:
    """The parsed ``ROOT/manifest.json`` of a built-in data set.

    Raises:
        FileNotFoundError: `root` or its manifest is missing (with how to make one).
        ValueError: the manifest is not valid JSON or not a usdiff built-in manifest.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"built-in data set folder {root} does not exist; create it with "
                                f"usdiff.data.generate_dataset({str(root)!r}) or `usdiff data generate`")
    path = root / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {root} is not a complete built-in data set "
                                "(generation may have been interrupted); regenerate it with generate_dataset")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a usdiff built-in data set manifest (format != {FORMAT!r})")
    missing = {"version", "n", "size", "seed", "items"} - set(manifest)
    if missing:
        raise ValueError(f"{path} lacks the keys {sorted(missing)}")
    if manifest["version"] != VERSION:
        raise ValueError(f"{path} has version {manifest['version']}, this usdiff reads version {VERSION}; "
                         "regenerate the data set")
    if len(manifest["items"]) != manifest["n"]:
        raise ValueError(f"{path} lists {len(manifest['items'])} items but n = {manifest['n']}")
    return manifest


def _check_writable(root: Path) -> bool:
    """Refuse a `root` that a data set may not be written into; return whether it holds one already
    (False: it is new or empty)."""
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"data set folder {root} exists and is not a directory")
    if not root.is_dir() or not any(root.iterdir()):
        return False
    if not is_builtin_folder(root):
        raise FileExistsError(
            f"{root} is not empty (hidden files count) and is not a usdiff built-in data set (it has no {MARKER} "
            "marker and no built-in manifest.json): nothing was written. Choose a new or empty folder; a partly "
            "written data set without the marker has to be deleted by hand")
    return True


def is_builtin_folder(root: str | Path) -> bool:
    """Whether `root` is a folder written by `generate_dataset`: it holds the marker file (written
    before any image, so also an interrupted generation) or a built-in manifest (a complete data set
    whose marker is missing)."""
    root = Path(root)
    if (root / MARKER).is_file():
        return True
    try:
        return json.loads((root / "manifest.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _mismatch(root: Path, n: int, size: int, seed: int, splits) -> str | None:
    """Why the data set at `root` cannot be reused (None if it can)."""
    if not root.is_dir():
        return f"{root} does not exist yet"
    if not (root / "manifest.json").is_file():
        return f"{root} has no manifest.json (new or incomplete)"
    try:
        manifest = load_manifest(root)
    except (FileNotFoundError, ValueError) as err:
        return str(err)
    want = {"n": n, "size": size, "seed": seed}
    for key, value in want.items():
        if manifest[key] != value:
            return f"the manifest has {key}={manifest[key]}, wanted {value}"
    if manifest.get("splits") != dict(zip(SPLITS, _check_splits(splits).tolist())):
        return f"the manifest has splits {manifest.get('splits')}, wanted {tuple(splits)}"
    for folder in FOLDERS:
        d = root / folder
        count = sum(1 for _ in d.glob("[0-9][0-9][0-9][0-9][0-9][0-9].png")) if d.is_dir() else 0
        if count != n:
            return f"{d} holds {count} images, the manifest lists {n}"
    return None


def ensure_dataset(root: str | Path, n: int = 12_000, size: int = 128, seed: int = 0,
                   splits: tuple[float, float, float] = (0.8, 0.1, 0.1), workers: int | None = None,
                   progress: bool = True) -> Path:
    """Reuse the data set at `root` when its manifest matches ``(n, size, seed, splits)`` and all
    files are there, else (re)generate it; prints which and why. Returns `root` as a Path.

    A data set that does not exist yet (or an empty folder) is written to a private folder beside
    `root` and renamed into place when complete, so several processes (notebooks run side by side)
    may ask for the same new one: each sees either no folder or a complete one, never another's
    half-written files. An existing, different (or incomplete) built-in data set is regenerated in
    place; a folder holding anything else is refused (FileExistsError), never written into. A
    process killed while generating leaves its private ``.NAME.XXXX`` folder beside `root`; the next
    generation names such folders (it cannot tell a dead one from another process's) for you to delete.
    """
    root = Path(root)
    _check_writable(root)                  # refused before anything is printed
    reason = _mismatch(root, n, size, seed, splits)
    if reason is None:
        print(f"usdiff: reusing the built-in data set at {root} (n={n}, size={size}, seed={seed})")
        return root
    print(f"usdiff: generating the built-in data set at {root} (n={n}, size={size}, seed={seed}) "
          f"because {reason}")
    if root.is_dir() and not root.is_symlink() and not any(root.iterdir()):
        root.rmdir()                       # an empty folder is filled like a new one
    if root.exists():
        return generate_dataset(root, n=n, size=size, seed=seed, splits=splits, workers=workers, progress=progress,
                                overwrite=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    private_name = re.compile(rf"\.{re.escape(root.name)}\.[A-Za-z0-9_]{{8}}")     # tempfile.mkdtemp's names
    leftovers = sorted(p.name for p in root.parent.iterdir() if p.is_dir() and private_name.fullmatch(p.name))
    if leftovers:
        print(f"usdiff: note: {', '.join(leftovers)} beside {root} are private folders of generations that were "
              "killed (or are still running in another process); delete them by hand once none is running")
    private = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(private, 0o777 & ~umask)      # mkdtemp makes it owner-only; a data set is as readable as any folder
    try:
        generate_dataset(private, n=n, size=size, seed=seed, splits=splits, workers=workers, progress=progress)
        try:
            private.rename(root)
        except OSError:
            if not root.exists():          # not a race: permissions, a dangling link, ...
                raise
            other = _mismatch(root, n, size, seed, splits)   # another process put a data set there first
            if other is not None:
                raise FileExistsError(f"{root} appeared while this data set was being generated and is not "
                                      f"the same one ({other}); remove it or choose another folder") from None
            print(f"usdiff: another process wrote the same data set to {root} first; using it")
    finally:
        if private.exists():
            shutil.rmtree(private)
    return root
