"""Train the shipped checkpoint assets/diffae_tiny.pt (tiny config, cosine schedule, EMA 0.998).

    python scripts/train_pretrained.py 3000 cosine runs/pretrained 800
    python -c "from usdiff.train import load_model, save_pretrained; \
               save_pretrained(load_model('runs/pretrained/ckpt.pt'), 'assets/diffae_tiny.pt')"

Arguments: number of phantoms (each rendered sim + real-like, seeds 10000..), schedule, run folder,
training steps. The images are rendered in memory at 128 px and downsampled to 64 px.
"""
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from usdiff.data.phantom import make_phantom
from usdiff.data.render import render_real, render_sim
from usdiff.model import get_config
from usdiff.model.diffae import DiffAE
from usdiff.train import Trainer

N, schedule, out, steps = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])

def pair(i):
    p = make_phantom(10_000 + i, 128)
    return render_sim(p), render_real(p, 10_000 + i)

if __name__ == "__main__":
    t = time.time()
    if os.path.exists("data.pt"):
        x, y = torch.load("data.pt")  # cache of the rendered images
    else:
        with ProcessPoolExecutor(2) as ex:
            pairs = list(ex.map(pair, range(N), chunksize=64))
        x = torch.from_numpy(np.stack([im for p in pairs for im in p]))[:, None]
        x = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False) * 2 - 1
        y = torch.tensor([d for _ in pairs for d in (0, 1)])
        torch.save((x, y), "data.pt")
    torch.set_num_threads(int(os.environ.get("NT", "1")))
    print("data", x.shape, time.time() - t, flush=True)
    mcfg, tcfg = get_config("tiny")
    mcfg.schedule = schedule
    tcfg.ema_decay = 0.998
    tcfg.total_steps = steps
    tcfg.ckpt_every = 200
    tcfg.sample_every = 500
    torch.manual_seed(0)
    model = DiffAE.from_config(mcfg)
    trainer = Trainer(model, torch.utils.data.TensorDataset(x, y), tcfg, out)
    trainer.fit(steps)
    trainer.save()
