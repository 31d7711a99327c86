// One chart per metric, drawn by uPlot on a canvas: runs overlaid, smoothing, log y, three x modes,
// drag-to-zoom (the page refetches that range at full resolution), hover values in the legend, NaN and
// ±inf as markers counted in the legend, an aggregate band, and PNG / SVG / CSV export.
import { h, clear, fmtNumber, toNumber, download } from "./util.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const X_LABEL = { step: "step", wall: "time (UTC)", relative: "seconds since start" };

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

// uPlot is loaded when the first chart is (a runs table never waits for it to be parsed); a page
// that charts asks for it beside its first data.
let uplotLoading = null;
export function uplotReady() {
  if (window.uPlot) return Promise.resolve();
  if (!uplotLoading) {
    uplotLoading = new Promise((ok, fail) => {
      const tag = h("script", { src: new URL("../vendor/uPlot.iife.min.js", import.meta.url).pathname });
      tag.addEventListener("load", ok);
      tag.addEventListener("error", () => { uplotLoading = null; fail(new Error("the chart library did not load")); });
      document.head.append(tag);
    });
  }
  return uplotLoading;
}

// x as the chart shows it: uPlot's time scale counts seconds.
function shownX(x, mode) {
  return mode === "wall" ? x / 1000 : x;
}

export function countsLabel(counts) {
  const parts = [];
  if (counts.nan) parts.push(`NaN×${counts.nan}`);
  if (counts.pinf) parts.push(`+inf×${counts.pinf}`);
  if (counts.ninf) parts.push(`−inf×${counts.ninf}`);
  return parts.join(" ");
}

export class Chart {
  // opts: { key, xMode, logY, smoothing, onZoom(lo, hi), onStale(runId) }
  constructor(container, opts) {
    this.opts = opts;
    this.series = []; // { id, label, color, x, y, nan, pinf, ninf, counts, smooth, state, startMs, fresh }
    this.band = null;
    this.zoom = null;
    this.title = h("h3", { class: "chart-title", text: opts.key });
    this.counts = h("span", { class: "chart-counts muted" });
    const tools = h("span", { class: "chart-tools" },
      h("button", { type: "button", class: "png", title: "download as PNG", onclick: () => this.exportPNG(), text: "PNG" }),
      h("button", { type: "button", class: "svg", title: "download as SVG", onclick: () => this.exportSVG(), text: "SVG" }),
      h("button", { type: "button", class: "csv", title: "every point, as CSV", onclick: () => this.exportCSV(), text: "CSV" }));
    this.plot = h("div", { class: "plot" });
    this.el = h("section", { class: "chart", dataset: { key: opts.key } }, h("div", { class: "chart-head" }, this.title, this.counts, tools), this.plot);
    container.append(this.el);
    this.u = null;
  }

  setSeries(list, zoom) {
    this.series = list;
    this.zoom = zoom || null;
    this.redraw(true);
  }

  setBand(band) {
    this.band = band;
    this.redraw(true);
  }

  tables() {
    const mode = this.opts.xMode;
    const logY = this.opts.logY;
    const fix = (ys) => (logY ? ys.map((v) => (v > 0 ? v : null)) : ys);
    const tables = [];
    const specs = [];
    if (this.band) {
      const xs = this.band.x.map((x) => shownX(x, mode));
      tables.push([xs, fix(this.band.max)], [xs, fix(this.band.min)], [xs, fix(this.band.mean)]);
      const fill = css("--band");
      specs.push(
        { label: "max", stroke: fill, width: 1 },
        { label: "min", stroke: fill, width: 1 },
        { label: `mean of ${this.band.runs} runs`, stroke: css("--accent"), width: 2 });
      return { tables, specs };
    }
    for (const s of this.series) {
      const counts = countsLabel(s.counts);
      const label = s.label + (counts ? `  [${counts}]` : "");
      if (s.smooth) {
        tables.push([s.x.map((x) => shownX(x, mode)), fix(s.y)]);
        specs.push({ label: `${s.label} (raw)`, stroke: s.color + "55", width: 1, raw: true });
        tables.push([s.smooth.x.map((x) => shownX(x, mode)), fix(s.smooth.y)]);
        specs.push({ label, stroke: s.color, width: 2, run: s });
      } else {
        tables.push([s.x.map((x) => shownX(x, mode)), fix(s.y)]);
        specs.push({ label, stroke: s.color, width: 1.5, run: s });
      }
    }
    return { tables, specs };
  }

  redraw(rebuild) {
    const { tables, specs } = this.tables();
    const total = { nan: 0, pinf: 0, ninf: 0 };
    let points = 0;
    for (const s of this.series) {
      total.nan += s.counts.nan; total.pinf += s.counts.pinf; total.ninf += s.counts.ninf;
      points += s.points || 0;
    }
    const c = countsLabel(total);
    this.counts.textContent = c ? `non-finite: ${c}` : "";
    this.el.dataset.points = String(points);
    this.el.dataset.nan = String(total.nan);
    this.el.dataset.pinf = String(total.pinf);
    this.el.dataset.ninf = String(total.ninf);
    let lastX = -Infinity;
    for (const s of this.series) if (s.x.length) lastX = Math.max(lastX, s.x[s.x.length - 1], ...s.nan.slice(-1), ...s.pinf.slice(-1), ...s.ninf.slice(-1));
    this.el.dataset.lastX = String(lastX);
    const data = tables.length ? uPlot.join(tables) : [[]];
    if (!this.u || rebuild || this.specCount !== specs.length) {
      if (this.u) this.u.destroy();
      clear(this.plot);
      this.u = new uPlot(this.options(specs), data, this.plot);
      this.specCount = specs.length;
      // the faint raw line under a smoothed one needs no legend entry of its own
      const rows = this.u.root.querySelectorAll(".u-legend .u-series");
      specs.forEach((s, i) => { if (s.raw && rows[i + 1]) rows[i + 1].style.display = "none"; });
    } else {
      this.u.setData(data, !this.zoom);
    }
    if (this.zoom) this.u.setScale("x", { min: shownX(this.zoom[0], this.opts.xMode), max: shownX(this.zoom[1], this.opts.xMode) });
    this.el.dataset.drawn = String((Number(this.el.dataset.drawn) || 0) + 1);
    this.el.dataset.drawnAt = String(performance.now());
  }

  options(specs) {
    const width = Math.max(320, this.plot.clientWidth || this.el.clientWidth || 640);
    const fg = css("--fg"), grid = css("--grid");
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
    const self = this;
    this.specs = specs;
    return {
      width,
      height: 260,
      scales: { x: { time: this.opts.xMode === "wall" }, y: { distr: this.opts.logY ? 3 : 1 } },
      axes: [{ ...axis, label: X_LABEL[this.opts.xMode] }, { ...axis, size: 64 }],
      series: [
        { label: X_LABEL[this.opts.xMode], value: (u, v) => (v == null ? "" : this.opts.xMode === "wall" ? new Date(v * 1000).toISOString().slice(0, 19).replace("T", " ") : fmtNumber(v)) },
        ...specs.map((s) => ({ label: s.label, stroke: s.stroke, width: s.width, spanGaps: true, points: { show: false }, value: (u, v) => fmtNumber(v) })),
      ],
      bands: this.band ? [{ series: [1, 2], fill: css("--band") + "66" }] : [],
      cursor: { drag: { x: true, y: false, setScale: false }, sync: { key: "mm-charts" } },
      legend: { live: true },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 3) return;
          let lo = u.posToVal(u.select.left, "x"), hi = u.posToVal(u.select.left + u.select.width, "x");
          if (self.opts.xMode === "wall") { lo *= 1000; hi *= 1000; }
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          self.opts.onZoom(lo, hi);
        }],
        ready: [(u) => u.over.addEventListener("dblclick", () => self.opts.onZoom(null, null))],
        draw: [(u) => self.drawMarkers(u)],
      },
    };
  }

  // NaN and ±inf: never on the line, always visible: ▲ at the top for +inf, ▼ at the bottom for -inf,
  // ◆ on the bottom edge for NaN, in the run's colour.
  drawMarkers(u) {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const r = 5 * devicePixelRatio;
    ctx.save();
    for (const s of this.series) {
      const kinds = [["pinf", top + r], ["ninf", top + height - r], ["nan", top + height - 3 * r]];
      for (const [kind, y] of kinds) {
        ctx.fillStyle = s.color;
        for (const xv of s[kind]) {
          const x = u.valToPos(shownX(xv, this.opts.xMode), "x", true);
          if (x < left - 1 || x > left + width + 1) continue;
          ctx.beginPath();
          if (kind === "pinf") { ctx.moveTo(x, y - r); ctx.lineTo(x + r, y + r); ctx.lineTo(x - r, y + r); }
          else if (kind === "ninf") { ctx.moveTo(x, y + r); ctx.lineTo(x + r, y - r); ctx.lineTo(x - r, y - r); }
          else { ctx.moveTo(x, y - r); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r); ctx.lineTo(x - r, y); }
          ctx.closePath();
          ctx.fill();
        }
      }
    }
    ctx.restore();
  }

  // Live points after what the chart holds: appended as they are (they lie past its last bucket).
  append(runId, ev) {
    const s = this.series.find((x) => x.id === runId);
    if (!s) return false;
    const mode = this.opts.xMode;
    for (let i = 0; i < ev.values.length; i++) {
      const x = mode === "step" ? ev.steps[i] : mode === "wall" ? ev.timestamps[i] : (ev.timestamps[i] - (s.startMs ?? ev.timestamps[0])) / 1000;
      const v = toNumber(ev.values[i]);
      s.points = (s.points || 0) + 1;
      if (Number.isNaN(v)) { s.nan.push(x); s.counts.nan++; }
      else if (v === Infinity) { s.pinf.push(x); s.counts.pinf++; }
      else if (v === -Infinity) { s.ninf.push(x); s.counts.ninf++; }
      else {
        s.x.push(x); s.y.push(v);
        if (s.smooth && s.smooth.state) { // the same time-weighted EMA as the server, continued
          const st = s.smooth.state;
          const decay = Math.exp(st.log_w * (x - st.prev) / st.unit);
          st.acc = st.acc * decay + v; st.norm = st.norm * decay + 1; st.prev = x;
          s.smooth.x.push(x); s.smooth.y.push(st.acc / st.norm);
        }
      }
    }
    s.fresh = (s.fresh || 0) + ev.values.length;
    if (s.fresh > 2 * (this.plot.clientWidth || 800)) { s.fresh = 0; this.opts.onStale(runId); }
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.redraw(false); });
    }
    return true;
  }

  fileName(ext) {
    return `${this.opts.key.replace(/[^\w.-]+/g, "_")}.${ext}`;
  }

  legendEntries() {
    return this.specs.filter((s) => !s.raw).map((s) => ({ label: s.label, color: s.stroke.slice(0, 7) }));
  }

  exportPNG() {
    const src = this.u.ctx.canvas;
    const dpr = devicePixelRatio;
    const entries = this.legendEntries();
    const lineH = 18 * dpr, pad = 8 * dpr, titleH = 24 * dpr;
    const out = h("canvas");
    out.width = src.width;
    out.height = src.height + titleH + pad * 2 + entries.length * lineH;
    const ctx = out.getContext("2d");
    ctx.fillStyle = css("--bg");
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.fillStyle = css("--fg");
    ctx.font = `${14 * dpr}px sans-serif`;
    ctx.fillText(this.opts.key, pad, 17 * dpr);
    ctx.drawImage(src, 0, titleH);
    ctx.font = `${12 * dpr}px sans-serif`;
    entries.forEach((e, i) => {
      const y = titleH + src.height + pad + i * lineH;
      ctx.fillStyle = e.color;
      ctx.fillRect(pad, y + 4 * dpr, 14 * dpr, 4 * dpr);
      ctx.fillStyle = css("--fg");
      ctx.fillText(e.label, pad + 20 * dpr, y + 10 * dpr);
    });
    out.toBlob((blob) => download(this.fileName("png"), blob), "image/png");
    return out;
  }

  // An SVG of its own (uPlot draws on a canvas): axes with ticks, every line, markers, the legend.
  svgDocument() {
    const u = this.u;
    const dpr = devicePixelRatio;
    const W = u.width, plotH = u.height;
    const entries = this.legendEntries();
    const H = plotH + 30 + entries.length * 18 + 10;
    const el = (tag, attrs, text) => {
      const e = document.createElementNS(SVG_NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
      if (text !== undefined) e.textContent = text;
      return e;
    };
    const svg = el("svg", { xmlns: SVG_NS, width: W, height: H, viewBox: `0 0 ${W} ${H}`, "font-family": "sans-serif", "font-size": 11 });
    svg.append(el("rect", { x: 0, y: 0, width: W, height: H, fill: css("--bg") }));
    svg.append(el("text", { x: 8, y: 16, fill: css("--fg"), "font-size": 14 }, this.opts.key));
    const top = 24;
    const L = u.bbox.left / dpr, T = u.bbox.top / dpr + top, PW = u.bbox.width / dpr, PH = u.bbox.height / dpr;
    const fg = css("--fg"), grid = css("--grid");
    svg.append(el("rect", { x: L, y: T, width: PW, height: PH, fill: "none", stroke: grid }));
    for (const [scale, horizontal] of [["x", true], ["y", false]]) {
      const { min, max } = u.scales[scale];
      if (min == null || max == null) continue;
      for (const v of niceTicks(min, max, horizontal ? 6 : 5, scale === "y" && this.opts.logY)) {
        const p = u.valToPos(v, scale);
        const label = scale === "x" && this.opts.xMode === "wall" ? new Date(v * 1000).toISOString().slice(5, 16).replace("T", " ") : fmtNumber(v);
        if (horizontal) {
          svg.append(el("line", { x1: L + p, x2: L + p, y1: T, y2: T + PH, stroke: grid }));
          svg.append(el("text", { x: L + p, y: T + PH + 14, fill: fg, "text-anchor": "middle" }, label));
        } else {
          svg.append(el("line", { x1: L, x2: L + PW, y1: T + p, y2: T + p, stroke: grid }));
          svg.append(el("text", { x: L - 4, y: T + p + 4, fill: fg, "text-anchor": "end" }, label));
        }
      }
    }
    const clip = el("clipPath", { id: "plot" });
    clip.append(el("rect", { x: L, y: T, width: PW, height: PH }));
    svg.append(clip);
    const data = u.data;
    this.specs.forEach((s, i) => {
      const ys = data[i + 1];
      let d = "", pen = "M";
      for (let j = 0; j < data[0].length; j++) {
        const y = ys[j];
        if (y == null) continue;
        d += `${pen}${(L + u.valToPos(data[0][j], "x")).toFixed(1)} ${(T + u.valToPos(y, "y")).toFixed(1)}`;
        pen = "L";
      }
      const color = s.stroke.slice(0, 7);
      svg.append(el("path", { d, fill: "none", stroke: color, "stroke-width": s.width, "stroke-opacity": s.raw ? 0.35 : 1, "clip-path": "url(#plot)" }));
    });
    for (const s of this.series) {
      for (const [kind, y, shape] of [["pinf", T + 6, "▲"], ["ninf", T + PH - 2, "▼"], ["nan", T + PH - 12, "◆"]]) {
        for (const xv of s[kind]) {
          const x = L + u.valToPos(shownX(xv, this.opts.xMode), "x");
          if (x >= L - 1 && x <= L + PW + 1) svg.append(el("text", { x, y, fill: s.color, "text-anchor": "middle", class: kind }, shape));
        }
      }
    }
    entries.forEach((e, i) => {
      const y = plotH + top + 14 + i * 18;
      svg.append(el("rect", { x: 8, y: y - 6, width: 14, height: 4, fill: e.color }));
      svg.append(el("text", { x: 28, y: y, fill: fg }, e.label));
    });
    return svg;
  }

  exportSVG() {
    const text = new XMLSerializer().serializeToString(this.svgDocument());
    download(this.fileName("svg"), new Blob([text], { type: "image/svg+xml" }));
    return text;
  }

  exportCSV() {
    const q = new URLSearchParams();
    for (const s of this.series) q.append("run", s.id);
    q.set("key", this.opts.key);
    const a = h("a", { href: "/api/csv?" + q.toString(), download: this.fileName("csv") });
    document.body.append(a);
    a.click();
    a.remove();
  }

  resize() {
    if (this.u) this.u.setSize({ width: Math.max(320, this.plot.clientWidth), height: 260 });
  }

  destroy() {
    if (this.u) this.u.destroy();
    this.el.remove();
  }
}

export function niceTicks(min, max, count, log) {
  if (!(max > min)) return [min];
  if (log && min > 0) {
    const out = [];
    for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
      const v = 10 ** e;
      if (v >= min && v <= max) out.push(v);
    }
    if (out.length >= 2) return out;
  }
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}
