"""The README's commands are valid as written, and its translate command runs as printed."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from usdiff.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    cmds = []
    for block in blocks:
        block = re.sub(r"\\[ \t]*(#[^\n]*)?\n", " ", block)     # a command continued on the next line
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("usdiff "):
                cmds.append(shlex.split(line)[1:])
    return cmds


def test_every_readme_command_parses():
    cmds = readme_commands()
    assert {c[0] for c in cmds} >= {"data", "train", "reconstruct", "sample", "evaluate", "fid", "translate",
                                    "direction", "critics", "downstream"}
    assert any(c[:2] == ["data", "scanner"] for c in cmds) and any(c[:2] == ["critics", "fit"] for c in cmds)
    parser = build_parser()
    for argv in cmds:
        parser.parse_args(argv)   # unknown options or bad choices exit here


def test_readme_translate_runs_as_printed_with_the_shipped_files(tmp_path):
    argv = next(c for c in readme_commands() if c[0] == "translate" and "assets/diffae_tiny.pt" in c)
    (tmp_path / "sim_pngs").mkdir()
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(128, 128), (90, 160)]):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(tmp_path / "sim_pngs" / f"{i}.png")
    argv = [str(ROOT / a) if a.startswith("assets/") else a for a in argv]
    res = subprocess.run([sys.executable, "-m", "usdiff", *argv], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "translated").iterdir()) == ["0.png", "1.png"]
