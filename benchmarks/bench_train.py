"""Training throughput: vaelab.fit (its hand-derived step, and with --backward autograd) vs a plain hand-written
PyTorch loop vs pythae 0.1.2, against the FLOP limit.

    /work/venv/bin/python benchmarks/bench_train.py                       # MLP and conv, 2 epochs, 3 rounds
    /work/venv/bin/python benchmarks/bench_train.py --backbones mlp --rounds 5 --out benchmarks/results/train.json
    /work/venv/bin/python benchmarks/bench_train.py --backbones mlp --contenders vaelab,vaelab-ieee --epochs 16 \
        --max-train 12000 --threads 1 --out benchmarks/results/train_subnormals.json    # what flushing subnormals buys

``vaelab-ieee`` is vaelab.fit with the CPU's default float mode (subnormal numbers kept: no
``vaelab.budget.flush_denormals``); with 4 or more epochs the table adds the first and the last quarter's epochs.

The model is a VAE on Fashion-MNIST (MLP 784-512-256-16, or conv 32,64 + dense 256), batch 128,
Adam(W) lr 1e-3, Bernoulli likelihood. Every contender runs in its own subprocess (pythae in its own
virtualenv, see install_pythae.sh; skipped with the reason when absent) with the same thread count,
on the same data split (written once to a temporary .npy folder), and the contenders are
interleaved round by round; the table shows medians over rounds and epochs.

FLOP limit: the model's forward+backward FLOPs per image, counted by torch.utils.flop_counter on one
batch, times the training images, over the float32 matmul rate (GFLOP/s) that the *same process*
measures right before and after its training (the better of the two: the machine is shared and
noisy). "x limit" = measured s/epoch / limit s/epoch, computed per run, then the median.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_PYTHAE = os.environ.get("PYTHAE_VENV", "/work/venv-pythae")
# vaelab-autograd: fit with --backward autograd; vaelab-ieee: fit keeping subnormal numbers (no flush_denormals)
CONTENDERS = ("vaelab", "vaelab-autograd", "vaelab-ieee", "plain", "pythae")


# -- shared, pure-torch pieces (importable from the pythae virtualenv too) -------------------------
def make_nets(backbone: str, n_latent: int = 16):
    """(encoder body + head giving 2*n_latent, decoder giving logits (B, 1, 28, 28)): vaelab's architecture."""
    from torch import nn

    if backbone == "mlp":
        enc = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                            nn.Linear(256, 2 * n_latent))
        dec = nn.Sequential(nn.Linear(n_latent, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                            nn.Linear(512, 784), nn.Unflatten(1, (1, 28, 28)))
    else:
        enc = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(), nn.Flatten(),
                            nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 2 * n_latent))
        dec = nn.Sequential(nn.Linear(n_latent, 256), nn.ReLU(), nn.Linear(256, 64 * 7 * 7), nn.ReLU(),
                            nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1), nn.ReLU(),
                            nn.ConvTranspose2d(32, 1, 3, 2, 1, output_padding=1))
    return enc, dec


def matmul_gflops(n: int = 1024, reps: int = 8, clock=time.perf_counter) -> float:
    """Median float32 GFLOP/s of an n x n matmul in this process (the machine's reachable FLOP rate).

    clock=time.process_time gives GFLOP per CPU-second (all threads together): the rate that does not
    depend on how much of a shared machine the process got.
    """
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        t = clock()
        torch.mm(a, b)
        times.append(clock() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def count_flops_per_image(backbone: str, batch: int = 128) -> float:
    """Forward + backward FLOPs per image of one VAE training step (matmuls and convs; flop_counter)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    enc, dec = make_nets(backbone)
    x = torch.rand(batch, 1, 28, 28)
    with FlopCounterMode(display=False) as fc:
        mu, logvar = enc(x).chunk(2, -1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        loss = F.binary_cross_entropy_with_logits(dec(z), x, reduction="sum") / batch
        loss.backward()
    return fc.get_total_flops() / batch


def _load_split(folder: Path):
    import numpy as np
    import torch

    return {k: torch.from_numpy(np.load(folder / f"{k}.npy", allow_pickle=False))
            for k in ("x_train", "x_val", "x_test")}


# -- the contenders (each runs in a child process) ------------------------------------------------
def run_vaelab(d, backbone: str, epochs: int, seed: int, backward: str = "auto", flush: bool = True) -> dict:
    sys.path.insert(0, str(ROOT))
    import vaelab.train
    from vaelab.config import TrainConfig
    from vaelab.models import model_config
    from vaelab.train import fit

    if not flush:   # the CPU's default IEEE mode: subnormal numbers kept (and slow); this child never sets the mode
        vaelab.train.flush_denormals = lambda: None

    class Data:   # the split written by the parent, in the shape fit expects
        x_train, x_val, x_test = d["x_train"], d["x_val"], d["x_test"]
        y_train = y_val = y_test = None
        name = "fashion-mnist"

        def summary(self):
            return {"name": self.name}

    mcfg = model_config("vae", input_shape=(1, 28, 28), backbone=backbone)
    out = Path(tempfile.mkdtemp(prefix="bench-vaelab-"))
    try:
        t = time.perf_counter()
        run = fit(mcfg, Data(), TrainConfig(epochs=epochs, seed=seed, device="cpu", backward=backward), out / "m", progress=False)
        wall = time.perf_counter() - t
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"epoch_seconds": [h["seconds"] for h in run.history],
            "epoch_cpu_seconds": [h["cpu_seconds"] for h in run.history], "wall_seconds": wall,
            "test_neg_elbo": run.test["neg_elbo"]}


def _neg_elbo(enc, dec, x, batch: int = 1000) -> float:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(1)
    total = 0.0
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch):
            xb = x[i:i + batch]
            mu, logvar = enc(xb).chunk(2, -1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            rec = F.binary_cross_entropy_with_logits(dec(z), xb, reduction="none").flatten(1).sum(1)
            kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
            total += float((rec + kl).sum())
    return total / x.shape[0]


def run_plain(d, backbone: str, epochs: int, seed: int) -> dict:
    """What one writes by hand (pytorch/examples style): sigmoid + BCE, torch.optim.Adam, loss.item() per step."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    enc, dec = make_nets(backbone)
    t_all = time.perf_counter()
    params = [*enc.parameters(), *dec.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    x, xv = d["x_train"], d["x_val"]
    n, times, cpu = x.shape[0], [], []
    for _ in range(epochs):
        t, c = time.perf_counter(), time.process_time()
        perm = torch.randperm(n)
        total = 0.0
        for i in range(0, n, 128):
            xb = x[perm[i:i + 128]]
            mu, logvar = enc(xb).chunk(2, -1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            rec = F.binary_cross_entropy(torch.sigmoid(dec(z)), xb, reduction="sum")
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (rec + kl) / xb.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        _neg_elbo(enc, dec, xv)                      # validation each epoch, like the others
    return {"epoch_seconds": times, "epoch_cpu_seconds": cpu, "wall_seconds": time.perf_counter() - t_all,
            "test_neg_elbo": _neg_elbo(enc, dec, d["x_test"])}


def run_pythae(d, backbone: str, epochs: int, seed: int) -> dict:
    import torch
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    enc_net, dec_net = make_nets(backbone)

    class Enc(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = enc_net

        def forward(self, x):
            mu, logvar = self.net(x).chunk(2, -1)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Dec(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = dec_net

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    torch.manual_seed(seed)
    cfg = VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce")
    model = VAE(cfg, encoder=Enc(), decoder=Dec())
    out = Path(tempfile.mkdtemp(prefix="bench-pythae-"))
    tcfg = BaseTrainerConfig(output_dir=str(out), num_epochs=epochs, learning_rate=1e-3,
                             per_device_train_batch_size=128, per_device_eval_batch_size=1000, seed=seed, no_cuda=True)
    import logging

    logging.getLogger("pythae").setLevel(logging.ERROR)
    from pythae.data.datasets import BaseDataset

    # what pythae's TrainingPipeline builds from arrays: a per-sample dataset behind a DataLoader
    ds = {k: BaseDataset(d[k], torch.zeros(d[k].shape[0])) for k in ("x_train", "x_val")}
    t_all = time.perf_counter()
    trainer = BaseTrainer(model=model, train_dataset=ds["x_train"], eval_dataset=ds["x_val"], training_config=tcfg)
    times, cpu = [], []
    step = trainer.train_step

    def timed(epoch):
        t, c = time.perf_counter(), time.process_time()
        r = step(epoch)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        return r

    trainer.train_step = timed
    try:
        trainer.train()
        wall = time.perf_counter() - t_all
    finally:
        shutil.rmtree(out, ignore_errors=True)

    class _Logits(torch.nn.Module):
        def forward(self, z):
            return dec_net(z)

    return {"epoch_seconds": times, "epoch_cpu_seconds": cpu, "wall_seconds": wall,
            "test_neg_elbo": _neg_elbo(enc_net, _Logits(), d["x_test"])}


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    d = _load_split(Path(args.data))
    g0, c0 = matmul_gflops(), matmul_gflops(clock=time.process_time)
    run_autograd = functools.partial(run_vaelab, backward="autograd")
    run_ieee = functools.partial(run_vaelab, flush=False)
    res = {"vaelab": run_vaelab, "vaelab-autograd": run_autograd, "vaelab-ieee": run_ieee, "plain": run_plain,
           "pythae": run_pythae}[args.child](d, args.backbone, args.epochs, 0)
    g1, c1 = matmul_gflops(), matmul_gflops(clock=time.process_time)
    res.update(gflops=max(g0, g1), gflops_per_cpu_s=max(c0, c1), peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               n_train=int(d["x_train"].shape[0]), torch=torch.__version__, threads=torch.get_num_threads())
    print("RESULT " + json.dumps(res), flush=True)


# -- the parent: data, interleaving, table ---------------------------------------------------------
def write_split(folder: Path, max_train: int | None) -> None:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from vaelab.data import load_dataset

    d = load_dataset("fashion-mnist", seed=0, max_train=max_train)
    for k in ("x_train", "x_val", "x_test"):
        np.save(folder / f"{k}.npy", getattr(d, k).numpy())


def python_for(name: str, pythae_venv: str) -> str | None:
    if name != "pythae":
        return sys.executable
    py = Path(pythae_venv) / "bin" / "python"
    return str(py) if py.exists() else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default="mlp,conv")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians over rounds)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads (default: all cores; use 1 on an oversubscribed machine, see README)")
    p.add_argument("--max-train", type=int, default=None, help="fewer training images (quicker, noisier)")
    p.add_argument("--pythae-venv", default=DEFAULT_PYTHAE)
    p.add_argument("--out", default=str(HERE / "results" / "train.json"))
    p.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    p.add_argument("--backbone", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    contenders = [c for c in args.contenders.split(",") if c]
    skipped = {}
    if "pythae" in contenders:
        py = python_for("pythae", args.pythae_venv)
        ok = py and subprocess.run([py, "-c", "import pythae, torch"], capture_output=True).returncode == 0
        if not ok:
            skipped["pythae"] = (f"pythae not found in {args.pythae_venv}; install it with "
                                 "benchmarks/install_pythae.sh")
            contenders.remove("pythae")
            print(f"skipping pythae: {skipped['pythae']}", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    results: dict = {"load_1min": os.getloadavg()[0], "cpus": os.cpu_count(), "threads": args.threads,
                     "epochs": args.epochs, "rounds": args.rounds, "skipped": skipped, "backbones": {}}
    try:
        write_split(tmp, args.max_train)
        for bb in args.backbones.split(","):
            flops = count_flops_per_image(bb)
            runs: dict[str, list[dict]] = {c: [] for c in contenders}
            for r in range(args.rounds):
                for c in (contenders if r % 2 == 0 else contenders[::-1]):   # interleave, alternate order
                    cmd = [python_for(c, args.pythae_venv), str(Path(__file__).resolve()), "--child", c,
                           "--backbone", bb, "--data", str(tmp), "--epochs", str(args.epochs),
                           "--threads", str(args.threads)]
                    t = time.perf_counter()
                    pr = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                    line = [ln for ln in pr.stdout.splitlines() if ln.startswith("RESULT ")]
                    if pr.returncode or not line:
                        raise SystemExit(f"{c} ({bb}) failed:\n{pr.stderr[-3000:]}")
                    res = json.loads(line[0][7:])
                    limit = res["n_train"] * flops / (res["gflops"] * 1e9)
                    climit = res["n_train"] * flops / (res["gflops_per_cpu_s"] * 1e9)
                    res.update(limit_seconds=limit, x_limit=[s / limit for s in res["epoch_seconds"]],
                               limit_cpu_seconds=climit, x_limit_cpu=[s / climit for s in res["epoch_cpu_seconds"]],
                               process_seconds=time.perf_counter() - t)
                    runs[c].append(res)
                    print(f"[{bb} round {r + 1}] {c:7s} s/epoch {res['epoch_seconds']} cpu s/epoch "
                          f"{res['epoch_cpu_seconds']} limit {limit:.2f}s / {climit:.2f} cpu-s "
                          f"({res['gflops']:.0f} GFLOP/s, {res['gflops_per_cpu_s']:.0f} per cpu-s)",
                          file=sys.stderr, flush=True)
            results["backbones"][bb] = {"flops_per_image": flops, "runs": runs,
                                        "summary": summarise(runs, contenders)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_1min_end"] = os.getloadavg()[0]
    print_table(results, contenders)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


def summarise(runs: dict[str, list[dict]], contenders: list[str]) -> dict:
    med = statistics.median
    s = {}
    for c in contenders:
        rs = runs[c]
        secs = [v for r in rs for v in r["epoch_seconds"]]
        s[c] = {"s_per_epoch": med(secs), "images_per_s": med(r["n_train"] / v for r in rs for v in r["epoch_seconds"]),
                "wall_s_per_epoch": med(r["wall_seconds"] / len(r["epoch_seconds"]) for r in rs),
                "x_limit": med(v for r in rs for v in r["x_limit"]),
                "cpu_s_per_epoch": med(v for r in rs for v in r["epoch_cpu_seconds"]),
                "x_limit_cpu": med(v for r in rs for v in r["x_limit_cpu"]),
                "limit_s_per_epoch": med(r["limit_seconds"] for r in rs), "gflops": med(r["gflops"] for r in rs),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs), "test_neg_elbo": med(r["test_neg_elbo"] for r in rs),
                # the first and the last quarter of the epochs (subnormal numbers build up over a run)
                "first_cpu_s_per_epoch": med(v for r in rs for v in r["epoch_cpu_seconds"][:max(1, len(r["epoch_cpu_seconds"]) // 4)]),
                "last_cpu_s_per_epoch": med(v for r in rs for v in r["epoch_cpu_seconds"][-max(1, len(r["epoch_cpu_seconds"]) // 4):])}
    for other in ("vaelab-autograd", "vaelab-ieee", "plain", "pythae"):
        if other in s and "vaelab" in s:
            s["vaelab"][f"speedup_vs_{other}"] = s[other]["s_per_epoch"] / s["vaelab"]["s_per_epoch"]
            s["vaelab"][f"cpu_speedup_vs_{other}"] = s[other]["cpu_s_per_epoch"] / s["vaelab"]["cpu_s_per_epoch"]
    return s


def print_table(results: dict, contenders: list[str]) -> None:
    for bb, r in results["backbones"].items():
        print(f"\n{bb} VAE, Fashion-MNIST, batch 128, {results['epochs']} epochs x {results['rounds']} rounds, "
              f"{results['threads']} threads, {r['flops_per_image'] / 1e6:.2f} MFLOP/image (fwd+bwd), "
              f"load {results['load_1min']:.1f}")
        print(f"{'':15s} {'s/epoch':>8s} {'img/s':>8s} {'wall s/ep':>9s} {'limit s':>8s} {'x limit':>8s} "
              f"{'cpu s/ep':>8s} {'x limit(cpu)':>12s} {'GFLOP/s':>8s} {'RSS MB':>7s} {'test -ELBO':>10s}")
        for c in contenders:
            s = r["summary"][c]
            print(f"{c:15s} {s['s_per_epoch']:8.2f} {s['images_per_s']:8.0f} {s['wall_s_per_epoch']:9.2f} "
                  f"{s['limit_s_per_epoch']:8.2f} {s['x_limit']:8.2f} {s['cpu_s_per_epoch']:8.2f} "
                  f"{s['x_limit_cpu']:12.2f} {s['gflops']:8.0f} {s['peak_rss_mb']:7.0f} {s['test_neg_elbo']:10.2f}")
        if results["epochs"] >= 4:
            print("CPU s/epoch, first quarter of the epochs -> last quarter: " + ", ".join(
                f"{c} {r['summary'][c]['first_cpu_s_per_epoch']:.2f} -> {r['summary'][c]['last_cpu_s_per_epoch']:.2f}"
                for c in contenders))
        v = r["summary"].get("vaelab", {})
        for other in ("vaelab-autograd", "vaelab-ieee", "plain", "pythae"):
            for k in (f"speedup_vs_{other}", f"cpu_speedup_vs_{other}"):
                if k in v:
                    print(f"vaelab {k.replace('_', ' ')}: {v[k]:.2f}x")


if __name__ == "__main__":
    main()
