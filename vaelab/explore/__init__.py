"""The latent explorer: a local web page that walks the latent spaces of a run's models side by side.

``vaelab explore RUN`` serves ``create_app(RUN)`` (FastAPI + uvicorn) on 127.0.0.1 and opens the page.
The page (static/: hand-written HTML, JS and CSS, no CDN, no build step) shows per model a 2-D map
of the test codes coloured by label; hovering or dragging on it decodes the point live, sliders
move each latent dimension of a chosen example, two clicked points give an interpolation strip,
and buttons sample from the prior or the ex-post GMM. See docs/explorer.md.
"""
from __future__ import annotations

import argparse


def explore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN",
                   help="a run folder written by `vaelab compare` (RUN/models/<model>/), a folder of model folders, "
                        "or one model folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: only this machine can connect; 0.0.0.0 opens it "
                        "to the network)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    p.add_argument("--no-browser", action="store_true", help="do not open the page in a web browser")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads of the server (default 1: one decode is a few small matmuls, and "
                        "more threads only add synchronisation; see docs/explorer.md)")


def explore_cmd(args: argparse.Namespace) -> int:
    from vaelab.errors import ConfigError
    from vaelab.explore.explorer import find_model_folders
    from vaelab.explore.server import serve

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}.")
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}.")
    find_model_folders(args.run)          # a clear error before the server starts
    serve(args.run, host=args.host, port=args.port, open_browser=not args.no_browser, threads=args.threads)
    return 0


def create_app(*args, **kwargs):
    """See vaelab.explore.server.create_app (imported lazily: FastAPI is only needed to serve)."""
    from vaelab.explore.server import create_app as make

    return make(*args, **kwargs)


__all__ = ["create_app", "explore_args", "explore_cmd"]
