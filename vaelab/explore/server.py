"""The explorer's web app: ``create_app(run_dir) -> FastAPI`` (JSON API + the static page).

Endpoints (all JSON; images are base64 of raw uint8 (H, W, C) bytes, drawn with putImageData; a table's rows go
as bar pictures of their features, with the decoded rows themselves as "rows"):
  GET  /                                  the page (static/index.html; no CDN, works offline)
  GET  /api/models                        the run's models (name, kind, latent size, dataset...)
  GET  /api/models/{name}/map             test codes on the 2-D map + labels + projection + bounds
  GET  /api/models/{name}/example/{i}     test example i: image, code, reconstruction, map point
  POST /api/models/{name}/decode          {z: [[...D]], label?}            -> images
  POST /api/models/{name}/decode_map      {points: [[u, v]], base_index}   -> full codes z + images
  POST /api/models/{name}/traverse        {z, dim, lo, hi, n}              -> a traversal strip
  POST /api/models/{name}/interpolate     {z_a, z_b, n}                    -> codes, map points, images
  POST /api/models/{name}/sample          {sampler: prior|gmm, n, seed}    -> codes, map points, images
  GET  /api/models/{name}/holes?base_index=&grid=   judge confidence over the map grid (cached)

Bad requests answer 4xx with {"detail": "<what is wrong and how to fix it>"}: 404 unknown model or
example, 409 a model or dataset that cannot be loaded, 422 a malformed or out-of-range body.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from vaelab.errors import ConfigError, VaelabError
from vaelab.explore.explorer import HOLES_GRID, ExploreError, Explorer, JudgeLoader, default_judge_loader

STATIC = Path(__file__).parent / "static"
MAX_BATCH = 1024          # codes per decode request
MAX_ABS = 1e4             # |z| and |u|, |v| beyond this are refused (a typo, not a code)

Num = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS, le=MAX_ABS)]
Code = Annotated[list[Num], Field(min_length=1, max_length=4096)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecodeBody(_Body):
    z: Annotated[list[Code], Field(min_length=1, max_length=MAX_BATCH)]
    label: int | None = None


class DecodeMapBody(_Body):
    points: Annotated[list[Annotated[list[Num], Field(min_length=2, max_length=2)]],
                      Field(min_length=1, max_length=MAX_BATCH)]
    base_index: int = Field(0, ge=0)
    label: int | None = None


class TraverseBody(_Body):
    z: Code
    dim: int = Field(ge=0)
    lo: Num = -3.0
    hi: Num = 3.0
    n: int = Field(9, ge=2, le=64)
    label: int | None = None


class InterpolateBody(_Body):
    z_a: Code
    z_b: Code
    n: int = Field(10, ge=2, le=64)
    label: int | None = None


class SampleBody(_Body):
    sampler: Literal["prior", "gmm"] = "prior"
    n: int = Field(8, ge=1, le=256)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    label: int | None = None


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return ("the request body is not valid JSON "
                    f"({err.get('ctx', {}).get('error', 'parse error')}); send e.g. {{\"z\": [[0.0, 0.0]]}}.")
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg')}")
    return "bad request: " + "; ".join(parts[:5])


def create_app(run_dir: str | Path, judge_loader: JudgeLoader | None = default_judge_loader) -> FastAPI:
    """The app for one run folder. ``judge_loader(dataset) -> judge | None`` feeds the holes map (None: off)."""
    ex = Explorer(run_dir, judge_loader=judge_loader)
    app = FastAPI(title="vaelab explorer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.explorer = ex

    @app.exception_handler(ExploreError)
    async def _explore_error(request: Request, exc: ExploreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(VaelabError)
    async def _vaelab_error(request: Request, exc: VaelabError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    def images(m, z: torch.Tensor, label: int | None, base_index: int | None = None) -> dict[str, Any]:
        """{"shape", "images"} (+ "rows" for a table) of the decodes of codes z."""
        if m.model.is_conditional:
            ex._prepare(m)                  # the default label comes from the dataset
        return ex.decoded(m, ex.decode(m, z, ex.labels_for(m, z.shape[0], label, base_index)))

    def as_z(m, rows: list[list[float]]) -> torch.Tensor:
        lens = {len(r) for r in rows}
        if lens != {m.n_latent}:
            raise ExploreError(f"each code must have {m.n_latent} numbers (model {m.name!r} has a {m.n_latent}-D "
                               f"latent), got lengths {sorted(lens)}.", 422)
        return torch.tensor(rows, dtype=torch.float32)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/models")
    def models() -> dict[str, Any]:
        listed = [ex.describe(m) for m in ex.models.values()]
        ok = [d for d in listed if d["ok"]]
        has_2d = any(d["n_latent"] == 2 for d in ok)
        messages = []
        if not has_2d:
            messages.append("This run has no 2-D-latent model (ae-2d / vae-2d): every map shows the first two "
                            "principal components of a larger latent instead of the latent plane itself.")
        if ok and not any(d["has_labels"] for d in ok):
            messages.append("The dataset has no labels: points are not coloured by class.")
        return {"run": str(ex.run_dir), "models": listed, "has_2d": has_2d, "messages": messages,
                "default": [d["name"] for d in ok[:2]]}

    @app.get("/api/models/{name}/map")
    def latent_map(name: str) -> dict[str, Any]:
        return ex.latent_map(ex.get(name))

    @app.get("/api/models/{name}/example/{index}")
    def example(name: str, index: int) -> dict[str, Any]:
        return ex.example(ex.get(name), index)

    @app.post("/api/models/{name}/decode")
    def decode(name: str, body: DecodeBody) -> dict[str, Any]:
        m = ex.get(name)
        z = as_z(m, body.z)
        return images(m, z, body.label)

    @app.post("/api/models/{name}/decode_map")
    def decode_map(name: str, body: DecodeMapBody) -> dict[str, Any]:
        m = ex.get(name)
        z = ex.unproject(m, np.array(body.points), body.base_index)
        return {"z": z.tolist(), **images(m, z, body.label, body.base_index)}

    @app.post("/api/models/{name}/traverse")
    def traverse(name: str, body: TraverseBody) -> dict[str, Any]:
        m = ex.get(name)
        z0 = as_z(m, [body.z])
        if body.dim >= m.n_latent:
            raise ExploreError(f"dimension {body.dim} is out of range: model {name!r} has {m.n_latent} latent "
                               f"dimensions (0..{m.n_latent - 1}).", 422)
        if not body.lo < body.hi:
            raise ExploreError(f"lo must be below hi, got lo={body.lo}, hi={body.hi}.", 422)
        values = torch.linspace(body.lo, body.hi, body.n)
        z = z0.repeat(body.n, 1)
        z[:, body.dim] = values
        return {**images(m, z, body.label), "dim": body.dim, "values": values.tolist(), "z": z.tolist()}

    @app.post("/api/models/{name}/interpolate")
    def interpolate(name: str, body: InterpolateBody) -> dict[str, Any]:
        m = ex.get(name)
        za, zb = as_z(m, [body.z_a]), as_z(m, [body.z_b])
        t = torch.linspace(0, 1, body.n)[:, None]
        z = (1 - t) * za + t * zb                                       # (n, D), linear in z
        ex._prepare(m)
        return {"t": t[:, 0].tolist(), "z": z.tolist(), "coords": ex.project(m, z).tolist(),
                **images(m, z, body.label)}

    @app.post("/api/models/{name}/sample")
    def sample(name: str, body: SampleBody) -> dict[str, Any]:
        from vaelab.sampling import sample_labels

        m = ex.get(name)
        ex._prepare(m)
        z = ex.density(m, body.sampler, body.seed).sample(body.n, seed=body.seed).float()
        y = ex.labels_for(m, body.n, body.label) if body.label is not None else sample_labels(m.model, body.n)
        return {"sampler": body.sampler, "z": z.tolist(), "coords": ex.project(m, z).tolist(),
                "labels": y.tolist() if y is not None else None, **ex.decoded(m, ex.decode(m, z, y))}

    @app.get("/api/models/{name}/holes")
    def holes(name: str, base_index: Annotated[int, Query(ge=0)] = 0,
              grid: Annotated[int, Query(ge=4, le=128)] = HOLES_GRID,
              label: int | None = None) -> JSONResponse:
        m = ex.get(name)
        out = ex.holes(m, base_index, grid, label)
        return JSONResponse(out, status_code=202 if out.get("status") == "pending" else 200)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = True,
          threads: int | None = 1) -> None:
    """Run the explorer for ``run_dir`` until Ctrl-C (uvicorn), opening the page in a browser.

    ``threads``: torch intra-op threads (None: torch's default).
    """
    import threading
    import webbrowser

    import uvicorn

    import socket

    if threads:
        torch.set_num_threads(threads)
    app = create_app(run_dir)
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}); pass another --port "
                          "(or --host).") from None
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    print(f"vaelab explorer for {run_dir} on {url} (Ctrl-C stops it)")
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning")
