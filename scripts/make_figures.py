"""Draw the README figures in ``assets/``: the hero strip and the architecture diagram.

    python scripts/make_figures.py [--ckpt assets/diffae_tiny.pt] [--data data/builtin] [--out assets]

* ``hero.png``: held-out simulated images, the same images after moving ``z_sem`` along the BCE
  sim-vs-real classifier direction (x_T from DDIM inversion, kept fixed), and their real-like
  twins (same phantom, the real-like renderer), with the classifier's P(real) in the titles.
* ``architecture.png``: the Diffusion Autoencoder: semantic encoder, DDIM inversion, conditional
  DDIM decoding, and where a translation edits ``z_sem``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from usdiff.data import BuiltinDataset, ensure_dataset  # noqa: E402
from usdiff.latent import encode_dataset, train_linear_classifier  # noqa: E402
from usdiff.train import load_model  # noqa: E402
from usdiff.translate import manipulate  # noqa: E402
from usdiff.viz import save_figure, show_rows  # noqa: E402


def hero(ckpt: Path, data: Path, out: Path, n_images: int, alphas: tuple[float, ...], n_fit: int, seed: int) -> Path:
    model = load_model(ckpt).eval()
    size = model.config.image_size
    root = ensure_dataset(data, n=12_000, size=128, seed=0)
    train = BuiltinDataset(root, split="train", domain="both", size=size)
    half = len(train) // 2
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(half, size=min(n_fit, half), replace=False))
    z, y = encode_dataset(model, train, indices=np.r_[pick, pick + half])
    clf, report = train_linear_classifier(z, y, loss="bce", lr=1e-3, seed=seed, progress=False)
    print(f"BCE classifier on {len(z)} codes: test accuracy {report['test_accuracy']:.3f}")

    test = BuiltinDataset(root, split="test", domain="both", size=size)
    t_half = len(test) // 2
    idx = list(range(n_images))
    sim = torch.stack([test[i][0] for i in idx])
    real = torch.stack([test[t_half + i][0] for i in idx])
    result = manipulate(model, sim, clf, alphas=alphas, progress=True)
    rows = {"simulated": sim}
    for a, imgs, p in zip(alphas, result["images"], result["realness"]):
        if a == 0:
            continue
        rows[f"translated, α={a:g}\nP(real) {float(torch.as_tensor(p).float().mean()):.2f}"] = imgs
    rows["real-like twin\n(same phantom)"] = real
    fig = show_rows(rows, value_range=(-1, 1), size=1.6,
                    suptitle="Sim → real with a Diffusion Autoencoder: z_sem moved along the BCE classifier direction")
    return save_figure(fig, out / "hero.png", dpi=90)


def _box(ax, xy, text, color, w=1.9, h=0.8):
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc=color, ec="0.25"))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax, a, b, text=None, rad=0.0):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, color="0.2",
                                 connectionstyle=f"arc3,rad={rad}"))
    if text:
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.18, text, ha="center", fontsize=8, color="0.2")


def architecture(out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.set(xlim=(0, 12), ylim=(0, 4.2))
    ax.axis("off")
    _box(ax, (1, 2.1), "image $x_0$\n(B, 1, H, W)", "#e8e8e8", w=1.5)
    _box(ax, (3.6, 3.3), "semantic encoder\nconv net → vector", "#cfe2f3")
    _box(ax, (6.3, 3.3), "$z_{sem}$ (B, z_dim)", "#cfe2f3", w=1.7)
    _box(ax, (3.6, 0.9), "DDIM inversion\n$x_0 \\to x_T$ (ODE, η = 0)", "#fce5cd")
    _box(ax, (6.3, 0.9), "$x_T$ (B, 1, H, W)", "#fce5cd", w=1.6)
    _box(ax, (9.0, 2.1), "conditional DDIM\n$\\epsilon_\\theta(x_t, t, z_{sem})$\n$x_T \\to \\hat x_0$", "#d9ead3",
         w=2.0, h=1.1)
    _box(ax, (11.2, 2.1), "$\\hat x_0$", "#e8e8e8", w=0.9)
    _box(ax, (10.2, 3.7), "translate: $z + \\alpha\\, w$\nor lerp($z_{sim}$, $z_{real}$)", "#f4cccc", w=2.2, h=0.75)
    _arrow(ax, (9.1, 3.6), (7.75, 2.95))
    _arrow(ax, (1.75, 2.3), (2.65, 3.2))
    _arrow(ax, (1.75, 1.9), (2.65, 1.0))
    _arrow(ax, (4.55, 3.3), (5.5, 3.3))
    _arrow(ax, (4.55, 0.9), (5.5, 0.9))
    _arrow(ax, (6.3, 2.9), (3.9, 1.3), "condition", rad=0.0)
    _arrow(ax, (7.1, 3.3), (8.0, 2.5))
    _arrow(ax, (7.1, 0.9), (8.0, 1.7))
    _arrow(ax, (10.0, 2.1), (10.75, 2.1))
    ax.text(9.0, 1.2, "UNet with adaptive group norm:\n$(1 + z_s)\\,((1 + t_s)\\,\\mathrm{GN}(h) + t_b)$",
            ha="center", va="top", fontsize=8)
    ax.set_title("Diffusion Autoencoder: (x_T, z_sem) encode the image; editing z_sem translates it", fontsize=10)
    return save_figure(fig, out / "architecture.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=Path("assets/diffae_tiny.pt"))
    parser.add_argument("--data", type=Path, default=Path("data/builtin"))
    parser.add_argument("--out", type=Path, default=Path("assets"))
    parser.add_argument("--n-images", type=int, default=5, help="test phantoms in the hero strip")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.3, 1.0, 1.5])
    parser.add_argument("--n-fit", type=int, default=2000, help="train phantoms whose codes fit the classifier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("hero", "architecture"), help="draw one figure only")
    args = parser.parse_args()
    if args.only != "hero":
        print("wrote", architecture(args.out))
    if args.only != "architecture":
        print("wrote", hero(args.ckpt, args.data, args.out, args.n_images, tuple(args.alphas), args.n_fit, args.seed))


if __name__ == "__main__":
    main()
