"""Argument checks of the measurement scripts in scripts/."""
import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prior_sweep_settings_parse_and_bad_ones_say_what_is_expected():
    sweep = load("prior_sweep")
    assert sweep.parse_setting("data:20:0.5") == ("data", 20, 0.5)
    assert [sweep.parse_setting(g)[0] for g in sweep.GRID].count("gaussian") == 2
    for bad, fragment in (("data:20", "PRIOR:STEPS:ETA"), ("uniform:20:0", "PRIOR must be data or gaussian"),
                          ("data:0:0", "STEPS >= 1"), ("data:20:2", "0 <= ETA <= 1"), ("data:x:0", "PRIOR:STEPS:ETA")):
        with pytest.raises(argparse.ArgumentTypeError, match=fragment):
            sweep.parse_setting(bad)
