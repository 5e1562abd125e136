"""The CPU-default molecule protocol: the values `vaelab compare --dataset moses` trains with.

Chosen by short runs of benchmarks/molecule_learning.py (one torch thread, docs/molecules.md "Learning to
reconstruct"): exact greedy reconstruction grows with training steps, not with width, so the default trains a
narrow GRU on short molecules with small batches:

  * short molecules: MOSES SMILES of at most 30 characters (208,323 train / 23,128 test molecules qualify);
  * GRU width 128 (vs 256: 2.4x cheaper per step, token accuracy 0.813 vs 0.805 at equal CPU time);
  * batch 32, AdamW lr 3e-3 (batch 128 / lr 1e-3: token accuracy 0.645 after the same three epochs);
  * VAE: beta 1 with 1 nat of free bits per latent dimension (0.1 nats let the KL term push the code to ~6 nats
    and reconstruction stayed at 0.000 after 5 epochs; 1 nat: token accuracy 0.794 vs the AE's 0.813);
  * a joint property head on z for QED, logP and SA (Gómez-Bombarelli et al. 2018), weight 1.
"""
from __future__ import annotations

MAX_SMILES_LEN = 30          # characters of a MOSES SMILES (vaelab.molecules.data.load_moses max_length)
SUBSET = 20000               # train + val molecules sampled from the length-limited MOSES train split
N_TEST = 2000
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
DESIGN_PROPERTY = "qed"
DESIGN_STARTS = 10           # test molecules each model designs from (the report's Design section)
DESIGN_STEPS = 20
