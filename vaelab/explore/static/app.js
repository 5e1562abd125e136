// vaelab latent explorer: vanilla JS + canvas, no dependencies, no build step.
// One Panel per model. Images arrive as base64 raw uint8 (H, W, C) bytes and are drawn with
// putImageData onto a canvas at native resolution (CSS scales it up, pixelated).
"use strict";

const MAP = 340;                        // map canvas size in CSS pixels
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
const state = { models: [], panels: new Map(), example: 0, holes: false };

// -- helpers ---------------------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

class ApiError extends Error {}

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" },
                                           body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  let data;
  try { data = await r.json(); } catch (e) { throw new ApiError(`${r.status}: the server sent no JSON`); }
  if (!r.ok && r.status !== 202) throw new ApiError(data.detail || `${r.status}`);
  data._status = r.status;
  return data;
}

function drawBytes(canvas, b64, shape) {
  const [c, h, w] = shape;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const raw = atob(b64);
  const img = new ImageData(w, h);
  for (let i = 0, p = 0; i < w * h; i++, p += c) {
    const r = raw.charCodeAt(p);
    img.data[4 * i] = r;
    img.data[4 * i + 1] = c === 3 ? raw.charCodeAt(p + 1) : r;
    img.data[4 * i + 2] = c === 3 ? raw.charCodeAt(p + 2) : r;
    img.data[4 * i + 3] = 255;
  }
  canvas.getContext("2d").putImageData(img, 0, 0);
}

function imgCanvas(cls = "img") { return el("canvas", { class: cls, width: 8, height: 8 }); }
function fmt(v) { return (v >= 0 ? " " : "") + v.toFixed(2); }
function showMessages(box, messages, isError = false) {
  box.replaceChildren(...messages.map(m => el("div", { class: "msg" + (isError ? " error" : ""), text: m })));
}

// -- one model -------------------------------------------------------------------------------------
class Panel {
  constructor(info) {
    this.info = info;
    this.name = info.name;
    this.shape = info.view_shape || info.input_shape;    // a table's rows arrive as bar pictures
    this.z = null;              // the code shown in the decoded view, (D,)
    this.inflight = false;      // one decode request at a time; the newest waiting one replaces older ones
    this.pending = null;
    this.seq = 0;
    this.interp = null;         // null, or the list of picked {z, uv} while picking two points
    this.marks = { a: null, b: null, line: null, samples: [] };
    this.build();
  }

  build() {
    const i = this.info;
    const kind = `${i.model} · ${i.n_latent}-D latent · ${i.dataset || "?"}`;
    this.msg = el("div", { class: "msgs" });
    this.base = el("canvas", { class: "map-base" });
    this.top = el("canvas", { class: "map-top" });
    for (const c of [this.base, this.top]) {
      c.width = MAP * devicePixelRatio; c.height = MAP * devicePixelRatio;
      c.style.width = c.style.height = MAP + "px";
    }
    this.decoded = imgCanvas("img decoded");
    this.zread = el("div", { class: "zread" });
    this.orig = imgCanvas(); this.recon = imgCanvas();
    this.interpBtn = el("button", { type: "button", class: "interp", text: "Interpolate" });
    this.priorBtn = el("button", { type: "button", class: "sample-prior", text: "Sample from prior" });
    this.gmmBtn = el("button", { type: "button", class: "sample-gmm", text: "Sample from GMM" });
    this.holesMsg = el("span", { class: "holes-msg" });
    this.interpStrip = el("div", { class: "strip interp-strip" });
    this.sampleStrip = el("div", { class: "strip sample-strip" });
    this.travStrip = el("div", { class: "strip traverse-strip" });
    this.sliderGrid = el("div", { class: "grid" });
    this.root = el("section", { class: "panel", "data-model": this.name },
      el("h2", {}, this.name + " ", el("small", { text: kind })), this.msg,
      el("div", { class: "row" },
        el("div", { class: "mapwrap" }, this.base, this.top),
        el("div", { class: "side" },
          el("figure", {}, this.decoded, el("figcaption", { text: "decoded z (live)" })), this.zread,
          el("figure", {}, el("div", { class: "pair" }, this.orig, this.recon),
             el("figcaption", { class: "example-caption", text: "test example · reconstruction" })))),
      el("div", { class: "tools" }, this.interpBtn, this.priorBtn, this.gmmBtn, this.holesMsg),
      this.interpStrip, this.sampleStrip,
      el("details", { class: "sliders", open: "" }, el("summary", { text: "latent dimensions (traversal)" }),
         this.sliderGrid),
      this.travStrip);
    this.root.dataset.idle = "1";
    this.bindEvents();
  }

  error(e) { showMessages(this.msg, [String(e.message || e)], true); }

  async load() {
    if (!this.info.ok) { this.error(this.info.error); return; }
    try {
      this.map = await api(`/api/models/${encodeURIComponent(this.name)}/map`);
    } catch (e) { this.error(e); return; }
    showMessages(this.msg, this.map.messages);
    showLegend(this.map.class_names);
    this.buildSliders();
    await this.drawBase();
    await this.setExample(state.example);
    this.root.dataset.ready = "1";
  }

  // map coordinates <-> canvas CSS pixels (v points up)
  toPx([u, v]) {
    const b = this.map.bounds;
    return [(u - b.u[0]) / (b.u[1] - b.u[0]) * MAP, (b.v[1] - v) / (b.v[1] - b.v[0]) * MAP];
  }
  toUv(x, y) {
    const b = this.map.bounds;
    return [b.u[0] + x / MAP * (b.u[1] - b.u[0]), b.v[1] - y / MAP * (b.v[1] - b.v[0])];
  }
  project(z) {
    const p = this.map.projection;
    if (p.kind === "identity") return [z[0], z[1]];
    if (p.kind === "line") return [z[0], 0];
    return p.components.map(c => c.reduce((s, cd, d) => s + cd * (z[d] - p.mean[d]), 0));
  }

  async drawBase() {
    const ctx = this.base.getContext("2d");
    ctx.setTransform(devicePixelRatio, 0, 0, devicePixelRatio, 0, 0);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, MAP, MAP);
    this.holesMsg.textContent = "";
    if (state.holes) await this.drawHoles(ctx);
    const { coords, labels } = this.map;
    for (let i = 0; i < coords.length; i++) {
      const [x, y] = this.toPx(coords[i]);
      ctx.fillStyle = labels ? PALETTE[labels[i] % PALETTE.length] : "#444";
      ctx.globalAlpha = 0.75;
      ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
    }
    ctx.globalAlpha = 1;
    const kind = this.map.projection.kind;
    const ax = kind === "pca" ? ["PC1", "PC2"] : ["z1", "z2"];
    const b = this.map.bounds;
    ctx.fillStyle = "#333"; ctx.font = "11px sans-serif";
    ctx.fillText(`${ax[0]} ${b.u[0].toFixed(1)} … ${b.u[1].toFixed(1)}`, 4, MAP - 4);
    if (kind !== "line") ctx.fillText(`${ax[1]} ${b.v[0].toFixed(1)} … ${b.v[1].toFixed(1)}`, 4, 12);
  }

  async drawHoles(ctx) {
    const url = `/api/models/${encodeURIComponent(this.name)}/holes?base_index=${state.example}`;
    let h;
    try {
      for (let tries = 0; ; tries++) {
        h = await api(url);
        if (h._status !== 202 || tries > 600 || !state.holes) break;
        this.holesMsg.textContent = h.message;
        await new Promise(r => setTimeout(r, 1000));
      }
    } catch (e) { this.holesMsg.textContent = "holes map: " + e.message; return; }
    if (!state.holes) return;
    if (!h.available) { this.holesMsg.textContent = h.message; this.root.dataset.holes = "none"; return; }
    const g = h.grid, cell = MAP / g;
    for (let r = 0; r < g; r++) {           // row r is the r-th v from the bottom
      for (let c = 0; c < g; c++) {
        const conf = h.confidence[r][c];
        ctx.fillStyle = `rgba(0,0,0,${(0.85 * (1 - conf)).toFixed(3)})`;
        ctx.fillRect(c * cell, MAP - (r + 1) * cell, cell + 0.5, cell + 0.5);
      }
    }
    this.holesMsg.textContent = "holes map: dark = the judge recognises no class";
    this.root.dataset.holes = "shown";
  }

  drawTop(hover) {
    const ctx = this.top.getContext("2d");
    ctx.setTransform(devicePixelRatio, 0, 0, devicePixelRatio, 0, 0);
    ctx.clearRect(0, 0, MAP, MAP);
    for (const s of this.marks.samples) {
      const [x, y] = this.toPx(s);
      ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(x - 4, y - 4); ctx.lineTo(x + 4, y + 4); ctx.moveTo(x + 4, y - 4);
      ctx.lineTo(x - 4, y + 4); ctx.stroke();
    }
    if (this.marks.line) {
      const [[x0, y0], [x1, y1]] = this.marks.line.map(p => this.toPx(p));
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.setLineDash([5, 3]);
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke(); ctx.setLineDash([]);
    }
    for (const [key, col] of [["a", "#0a0"], ["b", "#c00"]]) {
      if (!this.marks[key]) continue;
      const [x, y] = this.toPx(this.marks[key]);
      ctx.fillStyle = col; ctx.beginPath(); ctx.arc(x, y, 5, 0, 2 * Math.PI); ctx.fill();
    }
    if (this.z) {
      const [x, y] = this.toPx(this.project(this.z));
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
      ctx.strokeStyle = "#fff"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
    }
  }

  // -- live decoding: at most one request in flight; the latest wish wins -------------------------
  request(job) {
    this.pending = job;
    if (!this.inflight) this.pump();
  }

  async pump() {
    const job = this.pending;
    this.pending = null;
    if (!job) return;
    this.inflight = true;
    const enc = encodeURIComponent(this.name);
    try {
      let r;
      if (job.uv) {
        r = await api(`/api/models/${enc}/decode_map`, { points: [job.uv], base_index: state.example });
        this.show(r.z[0], r.images[0]);
      } else {
        r = await api(`/api/models/${enc}/decode`, { z: [job.z] });
        this.show(job.z, r.images[0]);
      }
      if (job.resolve) job.resolve(this.z);
    } catch (e) { this.error(e); if (job.resolve) job.resolve(null); }
    this.inflight = false;
    if (this.pending) this.pump();
    else this.root.dataset.idle = "1";
  }

  decodeUv(uv) { this.root.dataset.idle = "0"; this.request({ uv }); }
  decodeZ(z) { this.root.dataset.idle = "0"; this.request({ z: z.slice() }); }
  decodeUvNow(uv) {
    this.root.dataset.idle = "0";
    return new Promise(resolve => this.request({ uv, resolve }));
  }

  show(z, b64) {
    this.z = z;
    drawBytes(this.decoded, b64, this.shape);
    this.decoded.dataset.z = JSON.stringify(z);
    this.decoded.dataset.seq = String(++this.seq);
    this.zread.textContent = "z = [" + z.map(fmt).join(",") + "]";
    this.syncSliders();
    this.drawTop();
  }

  // -- sliders and traversal -------------------------------------------------------------------------
  buildSliders() {
    const { lo, hi } = this.map.z_range;
    this.sliders = [];
    const rows = [];
    for (let d = 0; d < this.info.n_latent; d++) {
      const s = el("input", { type: "range", min: lo[d], max: hi[d], step: (hi[d] - lo[d]) / 400, "data-dim": d });
      const val = el("span", { text: "" });
      s.addEventListener("input", () => {
        if (!this.z) return;
        const z = this.z.slice(); z[d] = parseFloat(s.value);
        val.textContent = fmt(z[d]);
        this.decodeZ(z);
      });
      s.addEventListener("change", () => this.traverse(d));
      this.sliders.push([s, val]);
      rows.push(el("label", {}, `z${d + 1}`, s, val));
    }
    this.sliderGrid.replaceChildren(...rows);
  }

  syncSliders() {
    if (!this.sliders) return;
    this.sliders.forEach(([s, val], d) => {
      if (document.activeElement !== s) s.value = this.z[d];
      val.textContent = fmt(this.z[d]);
    });
  }

  async traverse(d) {
    if (!this.z) return;
    const { lo, hi } = this.map.z_range;
    try {
      const r = await api(`/api/models/${encodeURIComponent(this.name)}/traverse`,
                          { z: this.z, dim: d, lo: lo[d], hi: hi[d], n: 11 });
      this.strip(this.travStrip, `traversal of z${d + 1} from ${lo[d].toFixed(1)} to ${hi[d].toFixed(1)}`, r);
    } catch (e) { this.error(e); }
  }

  strip(box, title, r) {
    const cells = r.images.map((b64, i) => {
      const c = imgCanvas();
      drawBytes(c, b64, r.shape);
      c.title = "click: show this code";
      c.addEventListener("click", () => this.decodeZ(r.z[i]));
      return c;
    });
    box.replaceChildren(el("div", { class: "label", text: title }), ...cells);
    box.dataset.n = String(cells.length);
  }

  // -- example, interpolation, sampling ------------------------------------------------------------
  async setExample(i) {
    try {
      const r = await api(`/api/models/${encodeURIComponent(this.name)}/example/${i}`);
      drawBytes(this.orig, r.image, this.shape);
      drawBytes(this.recon, r.recon, this.shape);
      const names = this.map.class_names;
      const lab = r.label === null ? "" : ` (label ${names[r.label] ?? r.label})`;
      this.root.querySelector(".example-caption").textContent = `test example ${i}${lab} · reconstruction`;
      this.show(r.z, r.recon);
    } catch (e) { this.error(e); }
  }

  async pick(uv) {                  // a click while interpolating: A, then B, then the strip
    const z = await this.decodeUvNow(uv);
    if (!z || !this.interp) return;
    this.interp.push({ z: z.slice(), uv });
    if (this.interp.length === 1) { this.marks.a = uv; this.marks.b = null; this.marks.line = null; this.drawTop(); return; }
    const [a, b] = this.interp;
    this.interp = null;
    this.interpBtn.classList.remove("active");
    this.marks.b = uv; this.marks.line = [a.uv, b.uv];
    try {
      const r = await api(`/api/models/${encodeURIComponent(this.name)}/interpolate`, { z_a: a.z, z_b: b.z, n: 10 });
      this.strip(this.interpStrip, "interpolation A → B (linear in z)", r);
    } catch (e) { this.error(e); }
    this.drawTop();
  }

  async sample(sampler) {
    this.sampleSeed = (this.sampleSeed || 0) + 1;
    try {
      const r = await api(`/api/models/${encodeURIComponent(this.name)}/sample`,
                          { sampler, n: 10, seed: this.sampleSeed });
      this.marks.samples = r.coords;
      this.strip(this.sampleStrip, sampler === "gmm" ? "samples from the ex-post GMM (×)" :
                 "samples from the prior N(0, I) (×)", r);
      this.drawTop();
    } catch (e) { this.error(e); }
  }

  nearest(uv) {
    let best = 0, bd = Infinity;
    this.map.coords.forEach(([u, v], i) => {
      const d = (u - uv[0]) ** 2 + (v - uv[1]) ** 2;
      if (d < bd) { bd = d; best = i; }
    });
    return this.map.indices[best];
  }

  bindEvents() {
    const uvOf = e => {
      const r = this.top.getBoundingClientRect();
      return this.toUv(e.clientX - r.left, e.clientY - r.top);
    };
    let down = null;
    this.top.addEventListener("pointerdown", e => {
      if (!this.map) return;
      down = [e.clientX, e.clientY];
      this.top.setPointerCapture(e.pointerId);
      if (!this.interp) this.decodeUv(uvOf(e));
    });
    this.top.addEventListener("pointermove", e => {
      if (!this.map || this.interp) return;
      this.decodeUv(uvOf(e));                    // hover and drag alike decode live
    });
    this.top.addEventListener("pointerup", e => {
      if (!this.map || !down) return;
      const moved = Math.hypot(e.clientX - down[0], e.clientY - down[1]) > 3;
      down = null;
      if (this.interp && !moved) this.pick(uvOf(e));
    });
    this.top.addEventListener("dblclick", e => {
      if (!this.map || this.interp) return;
      setGlobalExample(this.nearest(uvOf(e)));
    });
    this.interpBtn.addEventListener("click", () => {
      this.interp = this.interp ? null : [];
      this.interpBtn.classList.toggle("active", !!this.interp);
      this.interpBtn.textContent = "Interpolate";
      if (this.interp) { this.marks.a = this.marks.b = this.marks.line = null; this.drawTop(); }
    });
    this.priorBtn.addEventListener("click", () => this.sample("prior"));
    this.gmmBtn.addEventListener("click", () => this.sample("gmm"));
  }
}

function showLegend(names) {
  const box = document.getElementById("legend");
  if (!names.length || box.childElementCount) return;
  box.append(...names.map((n, i) => el("span", { class: "key" },
    el("i", { style: `background:${PALETTE[i % PALETTE.length]}` }), " " + n)));
}

// -- the page ----------------------------------------------------------------------------------------
function setGlobalExample(i) {
  state.example = i;
  document.getElementById("example-index").value = i;
  for (const p of state.panels.values()) {
    if (!p.map) continue;
    p.setExample(i);
    if (state.holes && p.map.projection.kind === "pca") p.drawBase();   // the plane moved with the example
  }
}

function renderPanels(names) {
  const box = document.getElementById("panels");
  box.replaceChildren();
  state.panels.clear();
  for (const name of names) {
    const info = state.models.find(m => m.name === name);
    const p = new Panel(info);
    state.panels.set(name, p);
    box.append(p.root);
    p.load();
  }
}

async function main() {
  let r;
  try { r = await api("/api/models"); } catch (e) {
    showMessages(document.getElementById("messages"), ["cannot list the run's models: " + e.message], true);
    return;
  }
  state.models = r.models;
  document.getElementById("run").textContent = r.run;
  showMessages(document.getElementById("messages"), r.messages);
  const picker = document.getElementById("model-picker");
  const chosen = new Set(r.default);
  for (const m of r.models) {
    const box = el("input", { type: "checkbox", value: m.name });
    box.checked = chosen.has(m.name);
    box.addEventListener("change", () => {
      const names = [...picker.querySelectorAll("input:checked")].map(b => b.value);
      renderPanels(names);
    });
    picker.append(el("label", {}, box, " " + m.name + (m.ok ? "" : " (unusable)")));
  }
  const idx = document.getElementById("example-index");
  idx.addEventListener("change", () => {
    const i = parseInt(idx.value, 10);
    if (Number.isInteger(i) && i >= 0) setGlobalExample(i);
  });
  document.getElementById("example-random").addEventListener("click", () => {
    const p = [...state.panels.values()].find(q => q.map);
    if (p) setGlobalExample(Math.floor(Math.random() * p.map.n_test));
  });
  document.getElementById("holes-toggle").addEventListener("change", e => {
    state.holes = e.target.checked;
    for (const p of state.panels.values()) if (p.map) p.drawBase();
  });
  renderPanels(r.default);
  document.body.dataset.ready = "1";
}

window.explorer = { state, setGlobalExample };
main();
