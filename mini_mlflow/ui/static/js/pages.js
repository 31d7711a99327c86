// A run's page and the compare view: both are a header, tables, and one chart per metric, loaded as
// each chart scrolls into view (a page with 300 metrics does not fetch 300 series at once).
import { h, clear, api, fmtCount, fmtNumber, fmtTime, fmtDuration, shortId, makeHash, PALETTE } from "./util.js";
import { Chart, uplotReady } from "./chart.js";

function controls(page) {
  const p = page.params;
  const set = (name, value) => { page.params[name] = value; page.app.replace(makeHash(page.view, page.arg, page.params)); page.reloadCharts(); };
  const x = h("select", { id: "x-mode", "aria-label": "x axis", onchange: (e) => { page.params.z = ""; set("x", e.target.value); } },
    ...[["step", "x: step"], ["wall", "x: wall time"], ["relative", "x: relative time"]].map(([v, t]) => h("option", { value: v, text: t })));
  x.value = p.x || "step";
  const label = h("span", { class: "muted", id: "smooth-value", text: p.sm || "0" });
  const sm = h("input", { id: "smoothing", type: "range", min: "0", max: "0.99", step: "0.01", value: p.sm || "0", "aria-label": "smoothing",
    oninput: (e) => { label.textContent = e.target.value; }, onchange: (e) => set("sm", e.target.value === "0" ? "" : e.target.value) });
  const log = h("label", {}, h("input", { id: "log-y", type: "checkbox", checked: p.ly === "1", onchange: (e) => set("ly", e.target.checked ? "1" : "") }), " log y");
  const reset = h("button", { id: "reset-zoom", type: "button", text: "reset zoom", onclick: () => set("z", "") });
  const items = [x, h("label", {}, "smoothing ", sm, " ", label), log, reset];
  if (page.view === "compare") {
    items.push(h("label", {}, h("input", { id: "band", type: "checkbox", checked: p.band === "1", onchange: (e) => set("band", e.target.checked ? "1" : "") }), " mean and min–max band"));
  }
  return h("div", { class: "bar chart-controls" }, ...items);
}

function kvTable(id, title, obj, keepOrder) {
  const keys = keepOrder ? Object.keys(obj || {}) : Object.keys(obj || {}).sort();
  if (!keys.length) return null;
  return h("section", { class: "kv", id },
    h("h2", { text: title }),
    h("table", {}, h("tbody", {}, ...keys.map((k) => h("tr", {}, h("th", { text: k }), h("td", { text: String(obj[k]) }))))));
}

class ChartsPage {
  constructor(root, app, view, arg, params) {
    this.root = root;
    this.app = app;
    this.view = view;
    this.arg = arg;
    this.params = { ...params };
    this.charts = new Map();
    this.observer = new IntersectionObserver((entries) => {
      for (const e of entries) if (e.isIntersecting) this.loadChart(e.target.dataset.key);
    }, { rootMargin: "200px" });
  }

  get zoom() {
    const z = (this.params.z || "").split("~").map(Number);
    return z.length === 2 && z.every(Number.isFinite) ? z : null;
  }

  mountCharts(container, keys) {
    this.chartBox = container;
    for (const c of this.charts.values()) c.destroy();
    this.charts.clear();
    for (const key of keys) {
      const chart = new Chart(container, {
        key,
        xMode: this.params.x || "step",
        logY: this.params.ly === "1",
        onZoom: (lo, hi) => {
          this.params.z = lo == null ? "" : `${Number(lo.toPrecision(10))}~${Number(hi.toPrecision(10))}`;
          this.app.replace(makeHash(this.view, this.arg, this.params));
          this.reloadCharts();
        },
        onStale: () => this.loadChart(key, true),
      });
      chart.loaded = false;
      this.charts.set(key, chart);
      this.observer.observe(chart.el);
    }
  }

  reloadCharts() {
    this.mountCharts(this.chartBox, [...this.charts.keys()]);
  }

  async loadChart(key, again) {
    const chart = this.charts.get(key);
    if (!chart || (chart.loaded && !again)) return;
    chart.loaded = true;
    const t0 = performance.now();
    const library = uplotReady(); // fetched beside the data
    library.catch(() => {});
    const cols = Math.round((chart.plot.clientWidth || 800) * devicePixelRatio);
    const z = this.zoom;
    const ids = this.runIds();
    try {
      const doc = await api("/api/series", {
        run: ids, key, x: this.params.x || "step", cols, smooth: this.params.sm || "",
        lo: z ? z[0] : "", hi: z ? z[1] : "",
      });
      const list = doc.series.map((s) => ({
        id: s.run, label: this.label(s.run), color: this.color(s.run),
        x: s.x, y: s.y, nan: s.nan, pinf: s.pinf, ninf: s.ninf, counts: s.counts, points: s.points,
        smooth: s.smooth || null, startMs: s.start_ms, offset: s.offset,
      }));
      await library;
      chart.setSeries(list, z);
      if (this.view === "compare" && this.params.band === "1") {
        chart.setBand(await api("/api/aggregate", { runs: ids.join(","), key, x: this.params.x || "step", cols }));
      }
      chart.el.dataset.loadMs = String(Math.round(performance.now() - t0));
      this.app.watchSeries(this);
    } catch (err) {
      chart.plot.replaceChildren(h("p", { class: "error", text: err.message }));
    }
  }

  tails() {
    const out = [];
    for (const [key, chart] of this.charts) for (const s of chart.series) out.push(`${s.id}|${key}|${s.offset}`);
    return out;
  }

  onPoints(ev) {
    const chart = this.charts.get(ev.key);
    if (!chart) return;
    const s = chart.series.find((x) => x.id === ev.run);
    if (!s) return;
    if (ev.reload) { this.loadChart(ev.key, true); return; }
    s.offset = ev.offset;
    chart.append(ev.run, ev);
  }

  resize() { for (const c of this.charts.values()) c.resize(); }

  destroy() {
    this.observer.disconnect();
    for (const c of this.charts.values()) c.destroy();
  }
}

export class RunPage extends ChartsPage {
  constructor(root, app, arg, params) {
    super(root, app, "run", arg, params);
    this.load();
  }

  runIds() { return [this.run.id]; }
  label() { return this.run.name || shortId(this.run.id); }
  color() { return PALETTE[0]; }

  // The charts start from the run's metric keys (read from its folder, at once); its details follow.
  // A 1,000,000-point metric is then read once, for the chart, and the details reuse it.
  async load() {
    let keys;
    try {
      keys = await api("/api/keys", { run: this.arg });
    } catch (err) {
      clear(this.root).append(h("p", { class: "error", id: "run-error", text: err.message }));
      return;
    }
    this.run = { id: keys.id, name: null, status: "", exp: null };
    this.details = h("div", { id: "run-details" }, h("h1", { id: "run-title", text: shortId(keys.id) }));
    const charts = h("div", { class: "charts", id: "charts" });
    clear(this.root).append(this.details, controls(this), charts);
    const only = (this.params.m || "").split(",").filter(Boolean);
    const shown = only.length ? keys.metrics.filter((k) => only.includes(k)) : keys.metrics;
    this.mountCharts(charts, shown);
    // The first charts before the details: the server parses a big history once, for the chart, and
    // the details read the binary cache that parse leaves (both at once would parse it twice).
    await Promise.all(shown.slice(0, 2).map((k) => this.loadChart(k)));
    await this.loadDetails();
  }

  async loadDetails() {
    try {
      this.run = await api("/api/run/" + encodeURIComponent(this.arg));
    } catch (err) {
      clear(this.details).append(h("p", { class: "error", id: "run-error", text: err.message }));
      return;
    }
    const r = this.run;
    this.app.crumb(`${r.experiment_name || r.exp} › ${r.name || shortId(r.id)}`);
    const meta = {
      id: r.id, status: r.status, experiment: `${r.experiment_name || ""} (${r.exp})`, start: fmtTime(r.start) + " UTC",
      end: r.end ? fmtTime(r.end) + " UTC" : "", duration: fmtDuration(r.start, r.end, r.status), user: r.user || "",
      parent: r.parent || "", lifecycle: r.stage,
    };
    for (const k of Object.keys(meta)) if (!meta[k]) delete meta[k];
    const summary = h("section", { class: "kv", id: "metrics-summary" }, h("h2", { text: "Metrics" }),
      h("table", {}, h("thead", {}, h("tr", {}, ...["key", "last", "min", "max", "count", "last step"].map((t) => h("th", { text: t })))),
        h("tbody", {}, ...Object.entries(r.summary).map(([k, s]) => h("tr", {},
          h("th", { text: k }), ...[s.last, s.min, s.max, s.count, s.last_step].map((v) => h("td", { class: "num", text: fmtNumber(v) })))))));
    const arts = r.artifacts.length ? h("section", { class: "kv", id: "artifacts" }, h("h2", { text: `Artifacts (${r.artifacts.length})` }),
      h("ul", {}, ...r.artifacts.map((a) => h("li", {},
        h("a", { href: `/api/artifact/${r.id}/${a.path.split("/").map(encodeURIComponent).join("/")}`, target: "_blank", rel: "noopener", text: a.path }),
        h("span", { class: "muted", text: `  ${fmtCount(a.size)} B` }))))) : null;
    const actions = this.app.readOnly ? null : h("button", {
      id: "lifecycle", type: "button", text: r.stage === "deleted" ? "restore" : "delete",
      onclick: async () => {
        const resp = await fetch(`/api/run/${r.id}/${r.stage === "deleted" ? "restore" : "delete"}`, { method: "POST", headers: { "X-Mini-Mlflow": "1", "Content-Type": "application/json" }, body: "{}" });
        if (resp.ok) this.loadDetails();
      },
    });
    clear(this.details).append(
      h("div", { class: "run-head" }, h("h1", { id: "run-title", text: r.name || shortId(r.id) }), h("span", { class: "status " + r.status.toLowerCase(), text: r.status.toLowerCase() }), actions),
      h("div", { class: "columns" },
        h("div", {}, kvTable("meta", "Run", meta, true), kvTable("params", "Params", r.params), kvTable("tags", "Tags", r.tags), kvTable("results", "Results", r.results)),
        h("div", {}, summary, arts)));
    for (const chart of this.charts.values()) { // series that arrived first were labelled by id
      if (chart.series.some((s) => s.label !== this.label())) {
        chart.series.forEach((s) => { s.label = this.label(); });
        chart.redraw(true);
      }
    }
    this.app.reconnectSoon(); // the stream now knows the run's experiment (status changes)
    this.root.dataset.ready = "1";
  }

  onRuns(ev) {
    const mine = ev.changed.find((c) => c.id === this.run?.id);
    if (mine && mine.status !== this.run.status) {
      this.run.status = mine.status;
      const badge = this.root.querySelector(".run-head .status");
      if (badge) { badge.textContent = mine.status.toLowerCase(); badge.className = "status " + mine.status.toLowerCase(); }
    }
  }
}

export class ComparePage extends ChartsPage {
  constructor(root, app, params) {
    super(root, app, "compare", "", params);
    this.load();
  }

  runIds() { return this.doc.runs.map((r) => r.id); }
  label(id) { const r = this.doc.runs.find((x) => x.id === id); return r.name || shortId(id); }
  color(id) { return PALETTE[this.doc.runs.findIndex((x) => x.id === id) % PALETTE.length]; }

  async load() {
    const refs = (this.params.r || "").split(",").filter(Boolean);
    try {
      this.doc = await api("/api/compare", { runs: refs.join(",") });
    } catch (err) {
      clear(this.root).append(h("p", { class: "error", id: "compare-error", text: err.message }));
      return;
    }
    const d = this.doc;
    this.app.crumb(`compare ${d.runs.length} runs`);
    const head = h("tr", {}, h("th", { text: "" }), ...d.runs.map((r) => h("th", { style: null },
      h("span", { class: "swatch", dataset: { color: this.color(r.id) } }),
      h("a", { href: makeHash("run", shortId(r.id)), text: r.name || shortId(r.id) }))));
    const rows = [h("tr", { class: "group" }, h("th", { text: "params", colspan: d.runs.length + 1 }))];
    for (const [k, p] of Object.entries(d.params)) {
      rows.push(h("tr", { class: p.differs ? "differs" : "" }, h("th", { text: (p.differs ? "≠ " : "") + k }), ...p.values.map((v) => h("td", { text: v ?? "—" }))));
    }
    rows.push(h("tr", { class: "group" }, h("th", { text: "metrics (last / best)", colspan: d.runs.length + 1 })));
    for (const [k, m] of Object.entries(d.metrics)) {
      rows.push(h("tr", {}, h("th", { text: `${k} (${m.best_is})` }), ...m.last.map((v, i) => h("td", { class: "num" + (m.winner[i] ? " winner" : "") },
        v === null ? "—" : `${fmtNumber(v)} / ${fmtNumber(m.best[i])}${m.winner[i] ? " ★" : ""}`))));
    }
    const table = h("table", { id: "compare-table", class: "compare" }, h("thead", {}, head), h("tbody", {}, ...rows));
    const charts = h("div", { class: "charts", id: "charts" });
    clear(this.root).append(h("h1", { text: `Compare ${d.runs.length} runs` }), h("div", { class: "scroll-x" }, table), controls(this), charts);
    for (const sw of this.root.querySelectorAll(".swatch")) sw.style.background = sw.dataset.color;
    const keys = Object.keys(d.metrics);
    const only = (this.params.m || "").split(",").filter(Boolean);
    this.mountCharts(charts, only.length ? keys.filter((k) => only.includes(k)) : keys);
    this.root.dataset.ready = "1";
  }

  onRuns() {}
}
