"""How fast a molecule AE/VAE learns to reconstruct: token accuracy and exact reconstruction per CPU-minute.

    python benchmarks/molecule_learning.py --model ae --max-smiles-len 30 --subset 20000 --epochs 4 --threads 1

Trains one sequence model with vaelab.train.fit on a (length-limited) MOSES subset and prints, per epoch, the
CPU seconds spent so far, the teacher-forced token accuracy and the exact greedy reconstruction of validation
molecules (vaelab.molecules.training.ReconstructionRecorder), then the exact reconstruction of test molecules.
Writes the history as JSON to --json (default benchmarks/results/molecule_learning_<tag>.json).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="ae")
    p.add_argument("--tokenizer", default="selfies")
    p.add_argument("--max-smiles-len", type=int, default=30)
    p.add_argument("--subset", type=int, default=20000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--free-bits", type=float, default=0.1)
    p.add_argument("--beta", type=float, default=None)
    p.add_argument("--kl-warmup-fraction", type=float, default=0.5)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    from vaelab.config import TrainConfig
    from vaelab.models import ALL_MODELS, model_config
    from vaelab.molecules.dataset import load_molecules
    from vaelab.molecules.training import ReconstructionRecorder, exact_reconstruction
    from vaelab.train import fit

    data = load_molecules("moses", subset=a.subset, n_test=a.n_test, tokenizer=a.tokenizer, seed=a.seed,
                          max_smiles_len=a.max_smiles_len if a.max_smiles_len > 0 else None)
    print(data)
    stochastic = ALL_MODELS[a.model].is_stochastic
    mcfg = model_config(a.model, tokenizer=data.tokenizer.name, vocab=tuple(data.tokenizer.vocab.itos),
                        max_len=data.shape[0], n_latent=a.latent_dim, hidden=a.hidden, embed_dim=a.embed_dim,
                        beta=a.beta, bidirectional=a.bidirectional or None, free_bits=a.free_bits if stochastic else None)
    steps = a.epochs * math.ceil(len(data.smiles_train) / a.batch_size)
    tcfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed, device="cpu",
                       kl_schedule="linear" if a.kl_warmup_fraction > 0 else "constant",
                       kl_warmup_steps=max(1, int(a.kl_warmup_fraction * steps)), grad_clip=10.0)
    t0 = time.process_time()
    run = fit(mcfg, data, tcfg, None, progress=False, on_epoch=ReconstructionRecorder(data, n=500))
    cpu = 0.0
    rows = []
    for r in run.history:
        cpu += r["cpu_seconds"]
        rows.append({"epoch": r["epoch"], "cpu_s_train": round(cpu, 1), "token_accuracy": r["token_accuracy"],
                     "recon_exact": r["recon_exact"], "val": r["val"]})
        print(f"epoch {r['epoch']:>3}  train cpu {cpu:7.1f} s  token acc {r['token_accuracy']:.3f}  "
              f"exact {r['recon_exact']:.3f}  val loss {r['val']['loss']:.2f}", flush=True)
    test = exact_reconstruction(run.model, data.tokenizer, data.x_test, data.smiles_test)
    total = time.process_time() - t0
    print(f"test exact reconstruction {test:.3f} (n={len(data.smiles_test)}), {total:.0f} CPU-s in all")
    tag = f"{a.model}_{a.tokenizer}_len{a.max_smiles_len}_n{a.subset}_h{a.hidden}_lr{a.lr}_e{a.epochs}{'_bi' if a.bidirectional else ''}"
    out = Path(a.json or Path(__file__).parent / "results" / f"molecule_learning_{tag}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), "history": rows, "test_recon_exact": test, "cpu_s": total,
                               "n_params": sum(q.numel() for q in run.model.parameters())}, indent=1))


if __name__ == "__main__":
    main()
