"""Draw the IW curves and KL-per-dimension bars of several bench_iw_nll.py results in one figure each.

    python benchmarks/plot_iw_runs.py runs/lik/fm-vae runs/lik/fm-iwae --out-dir docs/figures --prefix fm_

Reads ``<run>/iw_nll.json`` (written by bench_iw_nll.py) and writes ``<prefix>iw_curve.png`` and
``<prefix>kl_per_dim.png`` with vaelab's report functions, plus a paired comparison of the per-image
IW-NLL at the largest K when exactly two runs are given (same test images, same seed).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaelab.report.likelihood_figures import plot_iw_curve, plot_kl_per_dim  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="model folders holding iw_nll.json")
    p.add_argument("--out-dir", default="docs/figures", help="folder for the PNGs (default docs/figures)")
    p.add_argument("--prefix", default="", help="file name prefix, e.g. fm_")
    args = p.parse_args(argv)
    res = {}
    for run in args.runs:
        r = json.loads((Path(run) / "iw_nll.json").read_text())
        name = r["model"] + (f" (K={r['k_train']})" if r["model"] == "iwae" else "")
        res[name] = (Path(run), r)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind = next(iter(res.values()))[1]["kind"]
    plot_iw_curve({n: {**r["curve"], "neg_elbo": r["neg_elbo"]} for n, (_, r) in res.items()},
                  out / f"{args.prefix}iw_curve.png", kind=kind)
    plot_kl_per_dim({n: r["kl_per_dim"] for n, (_, r) in res.items()}, out / f"{args.prefix}kl_per_dim.png")
    print(f"wrote {out / (args.prefix + 'iw_curve.png')} and {out / (args.prefix + 'kl_per_dim.png')}")
    if len(res) == 2:
        (na, (ra, a)), (nb, (rb, b)) = res.items()
        pa, pb = np.load(ra / "iw_nll.per_image.npy"), np.load(rb / "iw_nll.per_image.npy")
        if pa.shape == pb.shape:
            d = pa - pb
            print(f"paired over {d.size} test images at K={max(a['curve']['k'])}: {na} - {nb} = "
                  f"{d.mean():.2f} +- {d.std(ddof=1) / np.sqrt(d.size):.2f} nats; {nb} better on "
                  f"{100 * (d > 0).mean():.0f} % of the images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
