"""Molecules: MOSES data, SELFIES/SMILES tokenisers and the MOSES metrics (optional extra).

Install with ``pip install vaelab[molecules]`` and ``pip install --no-deps molsets==0.3.1``
(the MOSES data files). Submodules import RDKit lazily so that ``import vaelab`` never needs it.
"""
