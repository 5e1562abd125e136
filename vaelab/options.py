"""Command-line options generated from config fields: the one place where a field becomes an option.

    add_options(parser, TrainConfig, "train")      # --epochs, --batch-size, --lr, ... with help and defaults
    given(args, "train")                           # {"epochs": 5} : only what the user typed
    build(args, TrainConfig, "train")              # TrainConfig(epochs=5): the rest are the class defaults

Name, type, default, choices and help come from the field (``vaelab.config.opt`` metadata). Parsing
problems (not a number, not a list of integers, an unknown choice) are argparse errors: one line and
exit 2. Ranges are checked by the config classes, so a Python caller gets the same message. Each
option's ``dest`` is ``SECTION.field`` so that sections never collide (train.seed vs a command's
own --seed). Only argparse and the config module are imported: ``vaelab --help`` stays fast.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, Iterable

from vaelab.config import flag_of, parse_ints

_UNSET = None     # the argparse default of every generated option: "not given"


def _ints(flag: str):
    """'512,256' -> (512, 256); anything else is a ConfigError naming ``flag`` (config.parse_ints)."""
    return lambda text: parse_ints(text, flag, positive=False)


def _names(choices: tuple[str, ...] | None, noun: str = "value"):
    def parse(text: str) -> tuple[str, ...]:
        vals = tuple(t.strip() for t in text.split(",") if t.strip())
        bad = [v for v in vals if choices and v not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {noun} {bad[0]!r}; choose from {', '.join(choices or ())}")
        if not vals:
            raise argparse.ArgumentTypeError("expected at least one name")
        return vals
    return parse


def _floats(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.1,0.5,1, got {text!r}") from None
    if not vals or not all(math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"expected finite numbers like 0.1,0.5,1, got {text!r}")
    return vals


def bounded(parse_one, lo: float, hi: float):
    """An argparse type: ``parse_one(text)`` (``int`` or a finite float) within [lo, hi], for a command's own options."""
    def parse(text: str) -> float:
        v = (_int if parse_one is int else _finite)(text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, got {v}")
        return v
    return parse


def _finite(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def _kind(f: dataclasses.Field) -> str:
    """'bool' | 'int' | 'float' | 'str' | 'ints' | 'floats' | 'names', from the default (or the annotation when it is None)."""
    d = f.default
    if d is None or d is dataclasses.MISSING:
        return {"int | None": "int", "float | None": "float", "str | None": "str",
                "tuple[int, ...] | None": "ints", "tuple[str, ...] | None": "names"}.get(str(f.type), "str")
    if isinstance(d, bool):
        return "bool"
    if isinstance(d, tuple):
        return {str: "names", float: "floats"}.get(type(d[0]) if d else int, "ints")
    return {int: "int", float: "float", str: "str"}[type(d)]


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def cli_fields(cls: type, skip: Iterable[str] = ()) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are command-line options (``opt(cli=True)``), minus ``skip``."""
    skip = set(skip)
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli") and f.name not in skip]


def add_options(p: argparse.ArgumentParser, cls: type, section: str, *, skip: Iterable[str] = (),
                title: str | None = None, defaults: dict[str, str] | None = None) -> None:
    """Add one option per command-line field of ``cls`` to ``p`` (in an argument group ``title``).

    ``defaults`` replaces the "(default ...)" note of some fields, e.g. for defaults that depend on the
    image size in `compare`. Every option's argparse default is None ("not given": see ``given``).
    """
    g = p.add_argument_group(title or section)
    notes = defaults or {}
    for f in cli_fields(cls, skip):
        md, kind = f.metadata, _kind(f)
        note = notes.get(f.name)
        if note is None and f.default is not None and f.default is not dataclasses.MISSING:
            note = f"default {_show(f.default)}" if kind != "bool" else None
        help_text = md["help"] + (f" ({note})" if note else "")
        names = (flag_of(f), *md.get("aliases", ()))
        kw: dict[str, Any] = {"dest": f"{section}.{f.name}", "default": _UNSET, "help": help_text}
        if kind == "bool":
            # a True default is switched off by its flag (--no-pair), a False one on (--compile)
            g.add_argument(*names, action="store_const", const=not f.default, **kw)
            continue
        if md.get("metavar"):
            kw["metavar"] = md["metavar"]
        if kind in ("ints", "names", "floats"):
            noun = names[0].lstrip("-").removesuffix("s")          # --models: "unknown model 'gan'"
            kw["type"] = {"ints": _ints(names[0]), "floats": _floats}.get(kind) or _names(md.get("choices"), noun)
            kw.setdefault("metavar", "A,B,...")
        elif md.get("choices"):
            kw["choices"] = md["choices"]
        else:
            # floats parse as float: nan/inf reach the config, whose message names the field ("must be finite")
            kw["type"] = {"int": _int, "float": float, "str": str}[kind]
            kw.setdefault("metavar", {"int": "N", "float": "X", "str": "TEXT"}[kind])
        g.add_argument(*names, **kw)


def given(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The options of ``section`` the user gave: {field name: parsed value}."""
    prefix = section + "."
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not _UNSET}


def build(args: argparse.Namespace, cls: type, section: str, **fixed: Any) -> Any:
    """``cls`` from the given options of ``section`` (the class defaults for the rest) and ``fixed`` fields."""
    return cls(**{**given(args, section), **fixed})
