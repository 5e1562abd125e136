"""Checkpoints: exact round trip, every mismatch refused with a message, pickles never executed."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from vaelab.checkpoint import load_model, save_model
from vaelab.config import TrainConfig
from vaelab.errors import CheckpointError
from vaelab.models import build_model, model_config
from vaelab.train import fit


@pytest.fixture()
def trained(digits, tmp_path):
    fit(model_config("vae", input_shape=digits.shape, n_latent=4, hidden=(32,)), digits,
        TrainConfig(epochs=1, batch_size=64), tmp_path / "m", progress=False)
    return tmp_path / "m"


def test_round_trip_gives_identical_outputs(digits, tmp_path):
    for name, backbone in (("vae", "mlp"), ("cvae", "conv"), ("rae", "mlp")):
        torch.manual_seed(0)
        model = build_model(model_config(name, input_shape=digits.shape, n_latent=3, backbone=backbone,
                                         n_classes=10 if name == "cvae" else 0)).eval()
        save_model(tmp_path / name, model)
        loaded = load_model(tmp_path / name).model
        x, y = digits.x_test[:8], digits.y_test[:8] if name == "cvae" else None
        with torch.no_grad():
            torch.testing.assert_close(model.encode(x, y).mean, loaded.encode(x, y).mean, rtol=0, atol=0)
            z = torch.randn(8, 3)
            torch.testing.assert_close(model.decode(z, y), loaded.decode(z, y), rtol=0, atol=0)


def test_weights_of_another_architecture_are_refused(trained, tmp_path):
    other = build_model(model_config("vae", input_shape=(1, 8, 8), n_latent=6, hidden=(32,)))
    save_model(tmp_path / "other", other)
    (tmp_path / "other" / "weights.safetensors").replace(trained / "weights.safetensors")
    with pytest.raises(CheckpointError, match="does not match the weights.*n_latent: 4 in config.json vs 6"):
        load_model(trained)


def test_tampered_config_is_refused(trained):
    p = trained / "config.json"
    cfg = json.loads(p.read_text())
    cfg["model"]["likelihood"] = "gaussian"
    p.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="likelihood: 'gaussian' in config.json vs 'bernoulli'"):
        load_model(trained)
    p.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(trained)


def test_bit_flip_and_truncation_are_caught(trained):
    w = trained / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-100] ^= 0x01                                     # one bit in the tensor bytes
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model(trained)
    w.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(trained)


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/vaelab-pwned",))


@pytest.mark.parametrize("suffix", [".pkl", ".pt", ".safetensors", ""])
def test_pickle_is_refused_and_never_executed(tmp_path, suffix):
    import os
    if os.path.exists("/tmp/vaelab-pwned"):
        os.remove("/tmp/vaelab-pwned")
    p = tmp_path / f"model{suffix}"
    p.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_model(p)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(pickle.dumps(_Exploit()))
    (folder / "config.json").write_text(json.dumps({"format": "vaelab-checkpoint", "format_version": 1,
                                                    "model": model_config("vae").to_dict()}))
    with pytest.raises(CheckpointError):
        load_model(folder)
    assert not os.path.exists("/tmp/vaelab-pwned")


def test_torch_save_zip_is_refused(tmp_path):
    p = tmp_path / "model.bin"
    torch.save({"w": torch.zeros(2)}, p)
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_model(p)


def test_missing_folder_and_foreign_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path)


def test_safetensors_whose_header_length_starts_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    """Found by the Ctrl-C test: a header of 0x..80 bytes makes the file's first byte 0x80, like a pickle."""
    from vaelab.checkpoint import load_tensors, save_tensors

    for n in range(1, 400):              # find tensor names whose header length ends in 0x80
        p = tmp_path / "t.safetensors"
        save_tensors(p, {"w" * n: torch.zeros(2)}, {"k": "v"})
        if p.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.skip("no header length ending in 0x80 found")
    tensors, _ = load_tensors(p)
    assert torch.equal(tensors["w" * n], torch.zeros(2))
