"""usdiff.viz: strips, code embeddings and label maps drawn as the notebooks show them."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from usdiff.viz import DomainStyle, plot_embedding, plot_strip  # noqa: E402


def two_clouds(n=30, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    return rng.standard_normal((n, 2)) + 3 * y[:, None], y


def test_plot_strip_puts_the_inputs_above_the_ends():
    frames = torch.linspace(-1, 1, 4).reshape(4, 1, 1, 1).expand(4, 1, 8, 8)
    a, b = torch.full((1, 8, 8), -1.0), torch.full((1, 8, 8), 1.0)
    fig = plot_strip(frames, inputs=(a, b), titles=list("wxyz"), marks={1: "red"})
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(fig.axes) == 8 and len(visible) == 6  # 4 frames + 2 inputs; the 2 middle top cells hidden
    shown = [ax.images[0].get_array() for ax in fig.axes[4:]]
    np.testing.assert_allclose([s.mean() for s in shown], [0, 1 / 3, 2 / 3, 1], atol=1e-6)  # [-1, 1] -> [0, 1]
    assert fig.axes[0].images[0].get_array().max() == 0 and fig.axes[3].images[0].get_array().min() == 1
    assert fig.axes[5].spines["left"].get_edgecolor()[:3] == (1.0, 0.0, 0.0)
    assert [ax.get_title() for ax in fig.axes[4:]] == list("wxyz")
    plt.close(fig)
    fig = plot_strip(frames)
    assert len(fig.axes) == 4
    plt.close(fig)
    with pytest.raises(ValueError, match=r"inputs must be \(source, target\), got 1 images"):
        plot_strip(frames, inputs=(a,))


def test_plot_embedding_draws_domains_and_extras():
    z, y = two_clouds()
    fig = plot_embedding(z, y, extra={"manipulated": z[:3]}, title="t")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["real (15)", "simulated (15)", "manipulated"]
    assert len(ax.collections) == 3
    domain_colours = {to_rgba(c) for c in ("tab:orange", "tab:blue")}
    many = plot_embedding(z, y, extra={f"set {i}": z[:2] for i in range(9)}).axes[0]
    for placed in many.collections[2:]:                      # no placed set may look like a domain
        assert to_rgba(placed.get_facecolor()[0]) not in domain_colours
    assert many.get_legend().get_bbox_to_anchor().x0 > many.get_window_extent().x1 - 1   # beside the axes
    with pytest.raises(ValueError, match=r"emb must be \(N, 2\), got shape \(3, 3\)"):
        plot_embedding(np.zeros((3, 3)), [0, 1, 0])
    with pytest.raises(ValueError, match="y must contain only 0 \\(sim\\) and 1 \\(real\\)"):
        plot_embedding(z, np.full(len(z), 2))
    plt.close("all")


def test_plot_embedding_takes_names_and_colours_over_the_defaults():
    z, y = two_clouds()
    ax = plot_embedding(z, y, domains=DomainStyle(names={1: "real-like"}, colors={0: "black"})).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["real-like (15)", "simulated (15)"]
    real, sim = ax.collections
    assert to_rgba(sim.get_facecolor()[0])[:3] == (0.0, 0.0, 0.0)
    assert to_rgba(real.get_facecolor()[0])[:3] == to_rgba("tab:blue")[:3]
    plt.close("all")


def test_show_label_maps_colours_tissues_and_names_them():
    from usdiff.data.phantom import LABEL_NAMES, TISSUES, tissue_colors
    from usdiff.viz import show_label_maps

    lab = np.zeros((2, 8, 8), np.uint8)
    lab[0, 2:5, 2:5] = TISSUES["aorta"]
    lab[1, :4] = TISSUES["liver"]
    fig = show_label_maps(lab, titles=["a", "b"])
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert names == [LABEL_NAMES[k] for k in sorted({0, TISSUES["aorta"], TISSUES["liver"]})]
    shown = fig.axes[0].images[0]
    rgb = shown.cmap(shown.norm(TISSUES["aorta"]))[:3]
    np.testing.assert_allclose(rgb, tissue_colors()[TISSUES["aorta"]], atol=1e-6)
    with pytest.raises(ValueError, match="label_maps must be"):
        show_label_maps(np.full((1, 4, 4), 99))
