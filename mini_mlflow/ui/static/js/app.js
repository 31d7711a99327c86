// The page's entry point: the router (the whole view lives in the URL's hash), the keyboard, the theme
// and the one live stream per tab (Server-Sent Events: new points of the charts shown, changed runs).
import { h, api, parseHash, makeHash } from "./util.js";
import { RunsTable } from "./table.js";
import { RunPage, ComparePage } from "./pages.js";

const THEME_KEY = "mini-mlflow-theme";

export function tableQuery(p) {
  return api("/api/runs", { e: p.e || "", filter: p.f || "", view: p.v || "" });
}

function tableKey(p) {
  return JSON.stringify([p.e || "", p.f || "", p.v || ""]);
}

// Asked for as soon as this module runs (async: before the page's first layout), side by side: the
// experiments, and the table's rows when the table is the first view. boot.js has usually sent both
// already; api() then takes its answers.
const firstView = parseHash(location.hash);
const early = {
  experiments: api("/api/experiments"),
  table: firstView.view === "runs" ? { key: tableKey(firstView.params), doc: tableQuery(firstView.params) } : null,
};
early.experiments.catch(() => {}); // reported by start() when it takes the answer
early.table?.doc.catch(() => {}); // a bad filter is reported by the table when it takes the answer

class App {
  async start() {
    if (document.readyState === "loading") {
      await new Promise((ready) => document.addEventListener("DOMContentLoaded", ready, { once: true }));
    }
    this.view = document.getElementById("view");
    this.applyTheme(localStorage.getItem(THEME_KEY));
    document.getElementById("theme").addEventListener("click", () => this.toggleTheme());
    document.getElementById("help-btn").addEventListener("click", () => document.getElementById("help").showModal());
    document.addEventListener("keydown", (e) => this.onKey(e));
    window.addEventListener("hashchange", () => this.route());
    window.addEventListener("resize", () => this.page?.resize?.());
    this.prefetch = early.table;
    const doc = await early.experiments;
    this.experiments = doc.experiments;
    this.expNames = Object.fromEntries(doc.experiments.map((e) => [e.id, e.name]));
    this.readOnly = doc.read_only;
    document.getElementById("store").textContent = doc.root + (doc.read_only ? " (read-only)" : "");
    this.route();
  }

  route() {
    const { view, arg, params } = parseHash(location.hash);
    if (this.page?.destroy) this.page.destroy();
    this.runsWatch = null;
    this.page = null;
    this.crumb("");
    this.view.replaceChildren();
    delete this.view.dataset.ready;
    if (view === "run" && arg) this.page = new RunPage(this.view, this, arg, params);
    else if (view === "compare") this.page = new ComparePage(this.view, this, params);
    else this.page = new RunsTable(this.view, this, params);
    this.view.dataset.view = view === "run" || view === "compare" ? view : "runs";
    this.reconnect();
  }

  // The runs answer fetched at start, if it is the one asked for (once).
  takePrefetch(p) {
    const found = this.prefetch && this.prefetch.key === tableKey(p) ? this.prefetch.doc : null;
    this.prefetch = null;
    return found;
  }

  go(hash, replace) {
    if (hash === location.hash) this.route();
    else if (replace) location.replace(hash);
    else location.hash = hash;
  }

  // Keep the URL in step with the view without reloading it (sort, selection, zoom).
  replace(hash) {
    history.replaceState(null, "", hash);
  }

  crumb(text) {
    document.getElementById("crumbs").textContent = text;
  }

  applyTheme(theme) {
    if (theme === "dark" || theme === "light") document.documentElement.dataset.theme = theme;
    else delete document.documentElement.dataset.theme;
  }

  toggleTheme() {
    const dark = document.documentElement.dataset.theme
      ? document.documentElement.dataset.theme === "dark"
      : matchMedia("(prefers-color-scheme: dark)").matches;
    const next = dark ? "light" : "dark";
    localStorage.setItem(THEME_KEY, next);
    this.applyTheme(next);
    if (this.page?.reloadCharts && this.page.charts?.size) this.page.reloadCharts(); // canvas colours
  }

  onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const help = document.getElementById("help");
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName) && e.target.type !== "checkbox" && e.target.type !== "range";
    if (e.key === "Escape") {
      if (help.open) return;
      if (typing) { e.target.blur(); this.view.focus(); e.preventDefault(); return; }
      if (this.page instanceof RunsTable) { this.page.onKey(e); return; }
      e.preventDefault();
      this.go(makeHash("runs", "", {}));
      return;
    }
    if (typing) return;
    if (e.key === "?") { help.showModal(); e.preventDefault(); return; }
    if (e.key === "t") { this.toggleTheme(); e.preventDefault(); return; }
    if (e.key === "/" && !(this.page instanceof RunsTable)) {
      e.preventDefault();
      this.go(makeHash("runs", "", {}));
      setTimeout(() => document.getElementById("filter")?.focus(), 0);
      return;
    }
    if (this.page?.onKey && this.page.onKey(e)) e.preventDefault();
  }

  // --- live updates: one EventSource per tab, re-opened when what is shown changes ---------------
  watchRuns(page, experiments) {
    if (page !== this.page) return;
    this.runsWatch = experiments;
    this.reconnectSoon();
  }

  watchSeries(page) {
    if (page === this.page) this.reconnectSoon();
  }

  reconnectSoon() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.reconnect(), 50);
  }

  reconnect() {
    if (this.source) this.source.close();
    this.source = null;
    const tails = this.page?.tails ? this.page.tails() : [];
    const e = this.runsWatch ? this.runsWatch.join(",") : this.page instanceof RunPage ? this.page.run?.exp : "";
    if (!tails.length && !e) { this.setLive(false); return; }
    const q = new URLSearchParams();
    if (e) q.set("e", e);
    tails.forEach((t) => q.append("t", t));
    const source = new EventSource("/api/events?" + q.toString());
    this.source = source;
    source.addEventListener("hello", () => this.setLive(true));
    source.addEventListener("points", (m) => this.page?.onPoints?.(JSON.parse(m.data)));
    source.addEventListener("runs", (m) => this.page?.onRuns?.(JSON.parse(m.data)));
    source.onerror = () => this.setLive(false);
  }

  setLive(on) {
    const dot = document.getElementById("live");
    dot.className = on ? "on" : "";
    dot.title = on ? "live: new points and runs appear as they are written" : "not live";
  }
}

window.miniMlflow = new App();
window.miniMlflow.start().catch((err) => {
  document.getElementById("view").replaceChildren(h("p", { class: "error", text: String(err.message || err) }));
});
