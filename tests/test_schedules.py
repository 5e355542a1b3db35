import math

import pytest
import torch

from usdiff.model.schedules import (
    alphas_cumprod,
    cosine_beta_schedule,
    get_schedule,
    linear_beta_schedule,
)


def test_linear_betas_endpoints_and_dtype():
    betas = linear_beta_schedule(1000)
    assert betas.shape == (1000,) and betas.dtype == torch.float64
    assert betas[0].item() == pytest.approx(1e-4, abs=1e-15)
    assert betas[-1].item() == pytest.approx(0.02, abs=1e-15)
    assert torch.all(betas[1:] > betas[:-1])


def test_cosine_alpha_bar_matches_closed_form():
    T, s = 1000, 0.008
    ab = alphas_cumprod(cosine_beta_schedule(T, s=s))

    def f(t):
        return math.cos(((t / T + s) / (1 + s)) * math.pi / 2) ** 2

    # index i holds alpha_bar(i + 1); the last step is clipped at beta = 0.999
    for i in [0, 1, 10, 250, 500, 900, 990]:
        assert ab[i].item() == pytest.approx(f(i + 1) / f(0), rel=1e-9)


def test_cosine_endpoints():
    ab = alphas_cumprod(get_schedule("cosine", 1000))
    assert ab[0].item() > 0.9999          # alpha_bar(0) ~ 1: almost no noise at the first step
    assert ab[-1].item() < 1e-6           # alpha_bar(T) tiny: x_T is pure noise
    assert get_schedule("cosine", 1000).max().item() == pytest.approx(0.999)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alpha_bar_strictly_decreasing_in_unit_interval(name):
    betas = get_schedule(name, 1000)
    ab = alphas_cumprod(betas)
    assert torch.all((betas > 0) & (betas <= 0.999))
    assert torch.all(ab[1:] < ab[:-1])
    assert torch.all((ab > 0) & (ab < 1))


def test_linear_noisier_than_cosine_early_on():
    # the cosine schedule destroys information more slowly in the first half (Nichol & Dhariwal, fig. 5)
    lin = alphas_cumprod(get_schedule("linear", 1000))
    cos = alphas_cumprod(get_schedule("cosine", 1000))
    assert torch.all(cos[50:600] > lin[50:600])


def test_unknown_schedule_names_choices():
    with pytest.raises(ValueError, match="cosine.*linear|linear.*cosine"):
        get_schedule("sigmoid", 1000)


@pytest.mark.parametrize("T", [0, -5, 2.5])
def test_bad_T(T):
    with pytest.raises(ValueError, match="T"):
        linear_beta_schedule(T)
