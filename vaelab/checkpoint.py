"""Safe checkpoints: ``config.json`` + ``weights.safetensors``, never pickle.

A model folder holds:
    config.json            what the model is (ModelConfig), how it was trained, on which data, versions
    weights.safetensors    the best weights (lowest validation loss), with the model config and a
                           SHA-256 of the tensor bytes in the safetensors metadata
    last.safetensors       the resume point: weights + optimiser + RNG state + history (trainer)
    train_log.jsonl        one JSON line per epoch

Loading verifies everything before building anything: that the file is not a pickle, that the
JSON parses and names a known model, that the weights' embedded config equals config.json, that
the tensor bytes hash to the stored digest (a flipped bit is caught), and that every tensor name
and shape matches the architecture. Each failure is a CheckpointError that says what differs.
"""
from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaelab import __version__
from vaelab.config import ModelConfig
from vaelab.errors import CheckpointError, ConfigError, OutputError, VaelabError
from vaelab.io import atomic_path, atomic_write_json

FORMAT = "vaelab-checkpoint"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"


def versions() -> dict[str, str]:
    return {"vaelab": __version__, "torch": torch.__version__, "python": platform.python_version()}


def tensor_digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the tensors, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """Atomically write tensors to a safetensors file with a digest in its metadata."""
    from safetensors.torch import save_file

    from safetensors import SafetensorError

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = {**metadata, "sha256": tensor_digest(tensors)}
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=meta)
        except SafetensorError as e:   # its I/O errors (a full disk) are not OSErrors
            raise OutputError(f"could not write {path}: {e}. Check that the disk has space and the folder is "
                              "writable; the previous file is unchanged.") from None


def load_tensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file written by vaelab and verify its digest. Never unpickles."""
    from safetensors import safe_open

    path = Path(path)
    refuse_pickle(path)
    try:
        tensors: dict[str, Tensor] = {}
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist.") from None
    except Exception as e:  # safetensors raises several types on bad bytes; all mean "corrupt"
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e}). "
                              "It is truncated or corrupt; retrain, or use the other checkpoint in the folder.") from None
    digest = meta.get("sha256")
    if digest is None:
        raise CheckpointError(f"{path} has no vaelab digest in its metadata: it was not written by vaelab.")
    if tensor_digest(tensors) != digest:
        raise CheckpointError(f"{path} is corrupt: its tensor bytes do not match the SHA-256 recorded when it was "
                              "saved (a flipped bit or a partial copy). Retrain or restore the file.")
    return tensors, meta


def refuse_pickle(path: Path) -> None:
    """Raise if ``path`` looks like a pickle or a torch.save zip: vaelab never unpickles anything."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist.") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}.") from None
    # A safetensors file starts with its header length (u64, little-endian: any first byte, 0x80 included)
    # and then the JSON header's "{"; a pickle starts with 0x80 + a protocol byte, a torch.save zip with "PK".
    is_safetensors = len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000
    if (not is_safetensors and (head[:1] == b"\x80" or head[:2] == b"PK")) or \
            path.suffix in (".pt", ".pth", ".pkl", ".pickle", ".ckpt"):
        raise CheckpointError(
            f"{path} looks like a pickle / torch.save file. vaelab never unpickles files: unpickling runs "
            "arbitrary code. A vaelab checkpoint is a folder with config.json + weights.safetensors "
            "(written by `vaelab train`).")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded model with everything config.json says about it."""

    model: torch.nn.Module
    config: dict[str, Any]        # the whole config.json
    path: Path

    @property
    def model_config(self) -> ModelConfig:
        return self.model.cfg


def write_config(folder: str | Path, model_cfg: ModelConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """Atomically write config.json: the model config plus training/data/version information."""
    cfg = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model_cfg.to_dict(),
           **extra, "versions": versions()}
    atomic_write_json(Path(folder) / CONFIG_NAME, cfg)
    return cfg


def weights_metadata(model_cfg: ModelConfig, **extra: Any) -> dict[str, str]:
    return {"format": "vaelab-weights", "model_config": json.dumps(model_cfg.to_dict(), sort_keys=True),
            **{k: str(v) for k, v in extra.items()}}


def save_weights(folder: str | Path, model: torch.nn.Module, name: str = WEIGHTS_NAME, **extra: Any) -> None:
    save_tensors(Path(folder) / name, dict(model.state_dict()), weights_metadata(model.cfg, **extra))


def save_model(folder: str | Path, model: torch.nn.Module, extra: dict[str, Any] | None = None) -> None:
    """Save a model as config.json + weights.safetensors (both atomic)."""
    folder = Path(folder)
    save_weights(folder, model)
    write_config(folder, model.cfg, extra or {})


def read_config(folder: Path) -> dict[str, Any]:
    p = folder / CONFIG_NAME
    if not p.exists():
        raise CheckpointError(f"{folder} has no {CONFIG_NAME}: it is not a vaelab model folder "
                              "(expected config.json + weights.safetensors, as written by `vaelab train`).")
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p} is not valid JSON ({e}). It was truncated or edited; restore or retrain.") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a vaelab checkpoint config (missing \"format\": \"{FORMAT}\").")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{p} has format_version {cfg.get('format_version')!r}; this vaelab reads "
                              f"version {FORMAT_VERSION}.")
    return cfg


def describe_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(set(a) | set(b))
    parts = [f"{k}: {a.get(k)!r} in config.json vs {b.get(k)!r} in the weights" for k in keys if a.get(k) != b.get(k)]
    return "; ".join(parts[:5])


def load_model(path: str | Path, weights: str = WEIGHTS_NAME, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a model folder (or its weights file) after verifying it. Raises CheckpointError on any mismatch."""
    from vaelab.models import ALL_MODELS, build_model, config_from_dict, upgrade_state_dict

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist. Pass a model folder written by `vaelab train`.")
    if path.is_file():
        refuse_pickle(path)
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path} is not a vaelab checkpoint: pass the model folder "
                                  "(config.json + weights.safetensors).")
        path, weights = path.parent, path.name
    folder = path
    cfg_json = read_config(folder)
    name = cfg_json["model"].get("model") if isinstance(cfg_json.get("model"), dict) else None
    if name is not None and (not isinstance(name, str) or name not in ALL_MODELS):
        raise CheckpointError(f"{folder / CONFIG_NAME} names an unknown model {name!r}; this vaelab knows "
                              f"{', '.join(ALL_MODELS)}. The file was edited or comes from another version of vaelab.")
    try:
        model_cfg = config_from_dict(cfg_json.get("model"))  # ModelConfig or SeqModelConfig, by model name
    except ConfigError as e:
        raise CheckpointError(f"{folder / CONFIG_NAME}: {e}") from None
    tensors, meta = load_tensors(folder / weights)
    try:
        stored = json.loads(meta.get("model_config", ""))
    except json.JSONDecodeError:
        raise CheckpointError(f"{folder / weights} has no readable model config in its metadata.") from None
    try:   # both normalised: a field added since (its default) is no difference
        stored = json.loads(json.dumps(config_from_dict(stored).to_dict()))
    except ConfigError as e:
        raise CheckpointError(f"{folder / weights}: the model config in its metadata is invalid: {e}") from None
    if stored != json.loads(json.dumps(model_cfg.to_dict())):
        raise CheckpointError(f"{folder / CONFIG_NAME} does not match the weights it sits beside "
                              f"({describe_diff(json.loads(json.dumps(model_cfg.to_dict())), stored)}). The config was edited "
                              "or the files come from different models.")
    tensors = upgrade_state_dict(tensors)
    try:
        model = build_model(model_cfg)
    except VaelabError as e:
        raise CheckpointError(f"{folder}: cannot build the model its config describes: {e}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))[:3]
        unexpected = sorted(set(got) - set(expected))[:3]
        shapes = [f"{k}: {got[k]} vs {expected[k]}" for k in sorted(set(got) & set(expected)) if got[k] != expected[k]][:3]
        raise CheckpointError(f"the weights in {folder} are for another architecture than {model_cfg.model}/"
                              f"{model_cfg.backbone}: missing {missing}, unexpected {unexpected}, shape mismatches "
                              f"{shapes}.")
    model.load_state_dict(tensors, strict=True)
    model.to(device).eval()
    return Checkpoint(model, cfg_json, folder)
