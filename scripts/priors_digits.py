"""vae with each prior on digits under the default compare's small protocol (60 epochs, batch 64, 256-128, d=8, seed 0).

Usage: PYTHONPATH=. python scripts/priors_digits.py gaussian,uniform,laplace,mog,vamp [OUT]
Prints one JSON line per prior (test split: -ELBO, IW-NLL K=1000, KL, active units) and writes OUT/result.json.
"""
import json, sys, time
import torch
torch.set_num_threads(1)
from vaelab.config import TrainConfig
from vaelab.data import load_dataset
from vaelab.models import model_config
from vaelab.train import fit
from vaelab.metrics.likelihood import importance_weighted_curve, negative_elbo
from vaelab.metrics.collapse import collapse_diagnostics
OUT = sys.argv[2] if len(sys.argv) > 2 else "runs/priors-digits"
data = load_dataset("digits")
out = {}
for prior in sys.argv[1].split(","):
    t = time.time()
    cfg = model_config("vae", input_shape=data.shape, n_latent=8, hidden=(256, 128), prior=prior, prior_components=10)
    run = fit(cfg, data, TrainConfig(epochs=60, batch_size=64, seed=0), f"{OUT}/{prior}", overwrite=True, progress=False)
    m = run.model.eval()
    x = data.x_test
    c = importance_weighted_curve(m, x, ks=(1, 100, 1000), seed=0)
    e = negative_elbo(m, x, seed=0)
    d = collapse_diagnostics(m, x)
    out[prior] = {"neg_elbo": e["neg_elbo"], "neg_elbo_se": e["se"], "kl": e["kl"],
                  "iw_nll_1000": c["nll"][-1], "iw_nll_se": c["se"][-1], "active_units": d["active_units"],
                  "seconds": round(time.time() - t, 1)}
    print(prior, json.dumps(out[prior]), flush=True)
json.dump(out, open(f"{OUT}/result.json", "w"), indent=1)
