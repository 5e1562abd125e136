"""The molecule domain's report: figures (RDKit molecule grids, training curves) and the tables of its section.

The page is vaelab's one report template (``vaelab.report.html``, jinja2 with autoescape; its molecules
section), rendered from metrics.json and the PNGs in figures/ only (embedded as data URIs), so it can be
re-rendered without retraining: ``vaelab.report.html.write_molecule_report(run_folder, metrics)``. The tables here
are plain text cells: the template escapes them.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from vaelab.io import atomic_path

# (label in the table, key in a sampler's MOSES row, higher is better?)
MOSES_ROWS = (("Valid", "valid", True), ("Unique@1k", "unique@1000", True), ("Unique@n", "unique@n", True),
              ("FCD/Test", "FCD/Test", False), ("SNN/Test", "SNN/Test", True), ("Frag/Test", "Frag/Test", True),
              ("Scaf/Test", "Scaf/Test", True), ("IntDiv", "IntDiv", True), ("IntDiv2", "IntDiv2", True),
              ("Filters", "Filters", True), ("Novelty", "Novelty", True),
              # GuacaMol (Brown et al. 2019; vaelab.molecules.guacamol), against the same reference
              ("GuacaMol KL score", "KL score", True), ("GuacaMol FCD score", "FCD score", True))


def mol_grid_png(path: Path, smiles: Sequence[str], legends: Sequence[str] | None = None, per_row: int = 4,
                 size: int = 220) -> None:
    """Draw SMILES as an RDKit grid PNG (an invalid SMILES is an empty cell labelled 'invalid')."""
    from rdkit.Chem import Draw

    from vaelab.molecules.data import get_mol, quiet_rdkit

    with quiet_rdkit():
        mols = [get_mol(s) for s in smiles]
    legends = list(legends) if legends is not None else ["" for _ in smiles]
    legends = [lg if m is not None else f"{lg} invalid".strip() for lg, m in zip(legends, mols)]
    img = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(size, size), legends=legends,
                               returnPNG=False)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def _curves_png(path: Path, histories: dict[str, list]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, h in histories.items():
        ep = [r["epoch"] for r in h]
        ax[0].plot(ep, [r["val"].get("recon", math.nan) for r in h], marker="o", label=name)
        ax[1].plot(ep, [r["val"].get("kl", math.nan) for r in h], marker="o", label=name)
    ax[0].set(xlabel="epoch", ylabel="val recon (nats / molecule)")
    ax[1].set(xlabel="epoch", ylabel="val KL (nats)")
    ax[0].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _reconstruction_png(path: Path, histories: dict[str, list]) -> bool:
    """Token accuracy and exact reconstruction of validation molecules per epoch (ReconstructionRecorder);
    False (no figure) when no history recorded them."""
    if not any("recon_exact" in r for h in histories.values() for r in h):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, h in histories.items():
        rows = [r for r in h if "recon_exact" in r]
        ep = [r["epoch"] for r in rows]
        ax[0].plot(ep, [r["token_accuracy"] for r in rows], marker="o", label=name)
        ax[1].plot(ep, [r["recon_exact"] for r in rows], marker="o", label=name)
    n = next(r.get("recon_n") for h in histories.values() for r in h if "recon_exact" in r)
    ax[0].set(xlabel="epoch", ylabel="token accuracy (teacher forced)", ylim=(0, 1))
    ax[1].set(xlabel="epoch", ylabel=f"exact reconstruction (greedy, {n} val molecules)", ylim=(0, 1))
    ax[0].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return True


def write_figures(folder: Path, examples: dict[str, Any], histories: dict[str, list]) -> dict[str, str]:
    """One PNG per panel and model; returns {figure name: file name}."""
    folder.mkdir(parents=True, exist_ok=True)
    figs: dict[str, str] = {}
    for name, ex in examples.items():
        pairs = ex["recon"]
        f = f"{name}-reconstructions.png"
        mol_grid_png(folder / f, [s for p in pairs for s in p],
                     [lg for _ in pairs for lg in ("input", "decode(encode)")], per_row=4)
        figs[f"{name}: reconstructions (input, greedy decode of its code)"] = f
        for sampler in ("prior", "gmm"):
            f = f"{name}-samples-{sampler}.png"
            mol_grid_png(folder / f, ex[sampler][:16], per_row=4)
            figs[f"{name}: {sampler} samples"] = f
        if ex.get("interpolation"):
            f = f"{name}-interpolation.png"
            mol_grid_png(folder / f, ex["interpolation"], [f"t={i / 7:.2f}" for i in range(8)], per_row=8, size=180)
            figs[f"{name}: interpolation between two test molecules"] = f
        if ex.get("neighbours"):
            f = f"{name}-neighbours.png"
            cells, legends = [], []
            for sigma, decodes in ex["neighbours"].items():
                cells += [ex["neighbour_centre"]] + list(decodes[:5])
                legends += [f"centre (sigma={sigma:g})"] + [f"sigma={sigma:g}"] * 5
            mol_grid_png(folder / f, cells, legends, per_row=6, size=180)
            figs[f"{name}: neighbourhood of a test molecule (greedy decodes of z + sigma*eps)"] = f
    if histories:
        _curves_png(folder / "training-curves.png", histories)
        figs["training curves"] = "training-curves.png"
        if _reconstruction_png(folder / "reconstruction-curves.png", histories):
            figs["reconstruction per epoch: token accuracy and exact greedy reconstruction (validation)"] = \
                "reconstruction-curves.png"
    return figs


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def moses_table(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the MOSES table: each model x sampler, then the published MOSES VAE row."""
    cols = [(m, s) for m, r in doc["models"].items() if r.get("status") == "ok" for s in r["samplers"]]
    pub = doc["reference"]["MOSES VAE (published)"]
    extra = doc["reference"].get("rows", {})   # e.g. MOSES train molecules at the same sample size
    header = ["metric"] + [f"{m} ({s})" for m, s in cols] + list(extra) + ["MOSES VAE (published)"]
    rows = []
    present = {k for m, sm in cols for k in doc["models"][m]["samplers"][sm]}
    for label, key, _ in MOSES_ROWS:
        if key in ("KL score", "FCD score") and key not in present:
            continue                         # runs from before GuacaMol's scores
        pub_key = "unique@10000" if key == "unique@n" else key
        rows.append([label] + [_fmt(doc["models"][m]["samplers"][s].get(key)) for m, s in cols]
                    + [_fmt(r.get(key)) for r in extra.values()]
                    + [_fmt(pub.get(pub_key)) + (" (@10k)" if key == "unique@n" else "")])
    rows.append(["samples"] + [str(doc["models"][m]["samplers"][s].get("n_samples")) for m, s in cols]
                + [str(r.get("n_samples")) for r in extra.values()] + ["30000"])
    return header, rows


def markdown_table(doc: dict[str, Any]) -> str:
    """The MOSES table as GitHub Markdown (for docs/molecules.md)."""
    header, rows = moses_table(doc)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def latent_table(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): reconstruction accuracy, property probes, smoothness per sigma, test loss, training time."""
    ok = {m: r for m, r in doc["models"].items() if r.get("status") == "ok"}
    header = ["metric"] + list(ok)
    rows = [["reconstruction accuracy (test, greedy)"] + [_fmt(r["reconstruction_accuracy"]) for r in ok.values()]]
    rows += [[f"property probe R² {p}"] + [_fmt(r["property_r2"].get(p)) for r in ok.values()]
             for p in ("logP", "QED", "SA", "MW")]
    heads = sorted({p for r in ok.values() for p in r.get("property_head_r2", {})})
    rows += [[f"property head R² {p} (joint)"] + [_fmt(r.get("property_head_r2", {}).get(p)) for r in ok.values()]
             for p in heads]
    for sigma in doc["config"]["sigmas"]:
        key = str(sigma)
        for stat in ("valid", "same", "tanimoto"):
            rows.append([f"σ={sigma:g}: {stat}"] + [_fmt(r["smoothness"].get(key, {}).get(stat)) for r in ok.values()])
    rows.append(["test loss (nats / molecule)"] + [_fmt(r["test_loss"].get("loss")) for r in ok.values()])
    rows.append(["training wall time (s)"] + [_fmt(r["timings"]["train"]["wall_s"]) for r in ok.values()])
    return header, rows


def design_table_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows) of the Design section (metrics.json "design", vaelab.molecules.design.design_table), or None."""
    from vaelab.molecules.design import SUMMARY_KEYS

    d = doc.get("design")
    if not d or not d.get("models"):
        return None
    header = ["model", "method"] + list(SUMMARY_KEYS)
    rows = []
    for name, per in d["models"].items():
        for method, res in per.items():
            if "error" in res:
                rows.append([name, method, res["error"]] + [""] * (len(SUMMARY_KEYS) - 1))
            else:
                rows.append([name, method] + [design_cell(res["summary"][k]) for k in SUMMARY_KEYS])
    return header, rows


def design_cell(s: dict[str, float]) -> str:
    if not s or s.get("n", 0) == 0 or not math.isfinite(s["mean"]):
        return "n/a"
    if s["n"] > 1 and math.isfinite(s["lo"]):
        return f"{s['mean']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]"
    return f"{s['mean']:.3f}"


def path_grid_png(path, run: dict[str, Any], per_row: int = 6, max_cells: int = 12) -> None:
    """A molecule grid of one design path: the start, then the decoded candidates with their true property."""
    cells = run["path"][:max_cells]
    legends = [f"{'decoded start' if p['step'] == 0 else 'step ' + str(p['step'])}: "
               f"{'invalid' if p['value'] is None else format(p['value'], '.2f')}" for p in cells]
    mol_grid_png(path, [p["smiles"] for p in cells], legends, per_row=per_row, size=180)
