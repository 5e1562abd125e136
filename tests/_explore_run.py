"""A tiny run folder for the explorer tests: digits, small MLPs, a few epochs (seconds to train)."""
from __future__ import annotations

from pathlib import Path

import torch

SPECS = {"ae-2d": ("ae", 2), "vae-2d": ("vae", 2), "vae-5": ("vae", 5), "cvae-3": ("cvae", 3)}


def make_run(root: Path, names: tuple[str, ...] = tuple(SPECS)) -> Path:
    from vaelab.explore.demo import make_demo_run

    return make_demo_run(root, names=names, epochs=3, hidden=(32,), specs=SPECS)


class LogisticJudge:
    """A real (if simple) classifier of the training images: predict_proba(x) -> (N, C)."""

    def __init__(self, data):
        from sklearn.linear_model import LogisticRegression

        self.clf = LogisticRegression(max_iter=300).fit(data.x_train.flatten(1).numpy(), data.y_train.numpy())

    def predict_proba(self, x):
        return torch.from_numpy(self.clf.predict_proba(x.flatten(1).numpy()))


def make_colour_and_table_run(root: Path) -> Path:
    """One run folder with a VAE on 16x16 RGB images (class sub-folders) and a VAE on a table (csv, label column):
    tiny MLPs, 2 epochs, each with the data block `vaelab compare` writes (seconds to train)."""
    from test_colour import colour_folder
    from test_tabular import make_table, write_csv

    from vaelab.config import DataSpec, TrainConfig
    from vaelab.data import load_dataset
    from vaelab.models import model_config
    from vaelab.train import fit

    x, y = make_table(n=120, d=5)
    specs = {"colour-vae": DataSpec(dataset=f"folder:{colour_folder(root / 'imgs', n_per_class=10, size=16)}"),
             "table-vae": DataSpec(dataset=f"csv:{write_csv(root / 't.csv', x, y)}", label_column="kind")}
    for name, spec in specs.items():
        data = load_dataset(spec.dataset, **spec.load_kwargs())
        table = data.domain == "vectors"
        cfg = model_config("vae", input_shape=data.shape, n_latent=2, hidden=(32,),
                           likelihood="gaussian" if table else "bernoulli", learn_sigma=table)
        fit(cfg, data, TrainConfig(epochs=2, seed=0, device="cpu"), out=root / "run" / "models" / name, progress=False,
            data_meta=spec.meta())
    return root / "run"
