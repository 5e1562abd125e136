"""The CPU-default molecule protocol: the values `vaelab compare --dataset moses` trains with.

Chosen by short runs of benchmarks/molecule_learning.py (one torch thread, docs/molecules.md "Learning to
reconstruct"): exact greedy reconstruction grows with training steps, not with width, so the default trains a
narrow GRU on short molecules with small batches:

  * short molecules: MOSES SMILES of at most 25 characters (15,997 train / 1,802 test molecules qualify): the AE
    reached 0.468 exact test reconstruction after 6 epochs (159 CPU-s), against 0.210 after 5 epochs (195 CPU-s)
    with at most 30 characters;
  * GRU width 128 (vs 256: 2.4x cheaper per step, token accuracy 0.813 vs 0.805 at equal CPU time);
  * batch 32, AdamW lr 3e-3 (batch 128 / lr 1e-3: token accuracy 0.645 after the same three epochs);
  * VAE: beta 1 with 1 nat of free bits per latent dimension (0.1 nats let the KL term push the code to ~6 nats
    and reconstruction stayed at 0.000 after 5 epochs; 1 nat: token accuracy 0.794 vs the AE's 0.813);
  * a joint property head on z for QED, logP and SA (Gómez-Bombarelli et al. 2018), weight 1.
"""
from __future__ import annotations

MAX_SMILES_LEN = 25          # characters of a MOSES SMILES (vaelab.molecules.data.load_moses max_length)
SUBSET = 15000               # train + val molecules sampled from the length-limited MOSES train split (15,997)
N_TEST = 1500                # of the 1,802 length-limited MOSES test molecules
HIDDEN = 128
EMBED_DIM = 64
LATENT_DIM = 64
BATCH_SIZE = 32
LR = 3e-3
EPOCHS = 10
FREE_BITS = 1.0              # nats per latent dimension (VAEs)
KL_WARMUP_FRACTION = 0.5
PROPERTIES = ("qed", "logp", "sa")   # the joint property head (vaelab.molecules.properties); () = none
PROPERTY_WEIGHT = 1.0
RECON_HISTORY_N = 500        # validation molecules whose token accuracy / exact reconstruction is recorded per epoch
N_SAMPLES = 1000             # generated molecules per model and sampler (the MOSES row; its reference has 1,802)
DESIGN_PROPERTY = "qed"
DESIGN_STARTS = 10           # test molecules each model designs from (the report's Design section)
DESIGN_STEPS = 20

# `--preset gpu`: the full MOSES training for a CUDA GPU. Sizes follow the MOSES benchmark's VAE (Polykovskiy et
# al. 2020, moses/vae/config.py: latent 128, decoder GRU width 512, batch 512, lr 3e-4, 100 epochs) on all 1.58M
# training molecules without a length limit, 30,000 samples per sampler and the whole test split as the reference
# (the published MOSES rows); vaelab's own choices (free bits, the KL warm-up, the property head) stay as above.
# Any option given on the command line overrides its preset value.
GPU_PRESET = {"subset": None, "max_smiles_len": None, "n_test": 10_000, "n_ref": None, "hidden": 512,
              "latent_dim": 128, "batch_size": 512, "lr": 3e-4, "epochs": 100, "n_samples": 30_000, "device": "cuda"}
PRESETS = {"cpu": {}, "gpu": GPU_PRESET}
