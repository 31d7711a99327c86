// The runs table: MLflow's filter grammar (parsed by the server, errors inline), client-side sort,
// a column picker, selection, the differing params marked, live rows. Only the rows in view are in the
// DOM, so 10,000 runs cost what 40 do.
import { h, clear, api, fmtCount, fmtNumber, fmtTime, fmtDuration, shortId, toNumber, makeHash } from "./util.js";

const ROW_H = 28;
const OVERSCAN = 10;
const STATUSES = { RUNNING: "running", FINISHED: "finished", FAILED: "failed", KILLED: "killed", CRASHED: "crashed" };

const ATTRS = [
  { id: "a:id", label: "id", get: (r) => r.id, show: (r) => shortId(r.id) },
  { id: "a:name", label: "name", get: (r) => r.name },
  { id: "a:status", label: "status", get: (r) => r.status },
  { id: "a:start", label: "start (UTC)", get: (r) => r.start, show: (r) => fmtTime(r.start) },
  {
    id: "a:duration",
    label: "duration",
    get: (r) => (r.start == null || r.end == null ? null : r.end - r.start),
    show: (r) => fmtDuration(r.start, r.end, r.status),
  },
  { id: "a:exp", label: "experiment", get: (r) => r.expName },
  { id: "a:user", label: "user", get: (r) => r.user },
];

const KINDS = ["params", "metrics", "tags"];

// One object per run with its own fields; its params, metrics and tags stay in columns (cellsOf),
// found by the row's `i`: no object per run and kind, no property per run and key.
export function rowsOf(doc, expNames) {
  const cols = doc.runs;
  return cols.id.map((id, i) => ({
    i,
    id,
    name: cols.name[i],
    exp: cols.exp[i],
    expName: expNames[cols.exp[i]] || cols.exp[i],
    status: cols.status[i],
    start: cols.start[i],
    end: cols.end[i],
    user: cols.user[i],
    parent: cols.parent[i],
  }));
}

// Per kind and key, an array of values by row `i` (a key every run has: the answer's own array).
export function cellsOf(doc) {
  const n = doc.runs.id.length;
  const cells = { params: {}, metrics: {}, tags: {} };
  for (const kind of KINDS) {
    for (const [key, [idx, vals]] of Object.entries(doc[kind])) {
      if (idx === null) { cells[kind][key] = vals; continue; }
      const byRow = new Array(n);
      for (let j = 0; j < idx.length; j++) byRow[idx[j]] = vals[j];
      cells[kind][key] = byRow;
    }
  }
  return cells;
}

// A live row's values (a run as the stream sends it) into the cells at `i`, replacing what was there.
function setCells(cells, i, run) {
  for (const kind of KINDS) {
    for (const byRow of Object.values(cells[kind])) if (i < byRow.length) byRow[i] = undefined;
    for (const [key, value] of Object.entries(run[kind] || {})) (cells[kind][key] ||= [])[i] = value;
  }
}

function column(id, differs, cells) {
  const attr = ATTRS.find((a) => a.id === id);
  if (attr) return attr;
  const kind = id.slice(0, 2);
  const key = id.slice(2);
  const where = { "p:": "params", "m:": "metrics", "t:": "tags" }[kind];
  if (!where) return null;
  const value = (r) => cells[where][key]?.[r.i];
  return {
    id,
    label: key,
    kind: where,
    differs: where === "params" && differs.has(key),
    get: (r) => (where === "metrics" ? toNumber(value(r)) : value(r)),
    show: (r) => (where === "metrics" ? fmtNumber(value(r)) : value(r) ?? ""),
  };
}

function compareValues(a, b) {
  const an = a === null || a === undefined, bn = b === null || b === undefined;
  if (an || bn) return an && bn ? 0 : an ? 1 : -1;
  if (typeof a === "number" && typeof b === "number") {
    if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) ? (Number.isNaN(b) ? 0 : 1) : -1;
    return a - b;
  }
  const x = Number(a), y = Number(b);
  if (a !== "" && b !== "" && !Number.isNaN(x) && !Number.isNaN(y)) return x - y;
  return String(a).localeCompare(String(b));
}

export class RunsTable {
  constructor(root, app, params) {
    this.root = root;
    this.app = app;
    this.params = { ...params };
    this.rows = [];
    this.view = [];
    this.cursor = 0;
    this.selected = new Set((params.sel || "").split(",").filter(Boolean));
    this.build();
    this.load();
  }

  build() {
    const p = this.params;
    this.expSelect = h("select", { id: "exp", "aria-label": "experiment", onchange: () => this.setParam("e", this.expSelect.value) },
      h("option", { value: "", text: "all experiments" }),
      ...this.app.experiments.map((e) => h("option", { value: e.id, text: `${e.name} (${e.id})` })));
    this.expSelect.value = p.e || "";
    this.filter = h("input", {
      id: "filter", type: "search", placeholder: "filter: metrics.`val/acc` > 0.9 and params.optimizer = 'adam'   (/)",
      value: p.f || "", spellcheck: "false", autocomplete: "off", "aria-label": "filter",
      onkeydown: (e) => { if (e.key === "Enter") { e.preventDefault(); this.setParam("f", this.filter.value); } },
    });
    this.error = h("pre", { id: "filter-error", class: "error", hidden: true });
    this.count = h("span", { id: "count", class: "muted" });
    this.picker = h("details", { id: "columns", class: "picker" }, h("summary", { text: "columns" }), h("div", { class: "picker-body" }));
    this.compareBtn = h("button", { id: "compare-btn", type: "button", onclick: () => this.compare(), text: "compare (c)" });
    this.deletedToggle = h("label", { class: "muted" }, h("input", { type: "checkbox", id: "show-deleted", checked: p.v === "deleted", onchange: (e) => this.setParam("v", e.target.checked ? "deleted" : "") }), " deleted");
    const bar = h("div", { class: "bar" }, this.expSelect, this.filter, this.picker, this.deletedToggle, this.compareBtn, this.count);
    this.thead = h("thead");
    this.tbody = h("tbody");
    this.table = h("table", { id: "runs", class: "runs" }, this.thead, this.tbody);
    this.scroller = h("div", { class: "scroller", id: "runs-scroll", onscroll: () => this.renderRows() }, this.table);
    clear(this.root).append(bar, this.error, this.scroller);
  }

  setParam(name, value) {
    const params = { ...this.params, [name]: value };
    this.app.go(makeHash("runs", "", params), true);
  }

  async load() {
    const p = this.params;
    const t0 = performance.now();
    try {
      const doc = await (this.app.takePrefetch(p) || api("/api/runs", { e: p.e || "", filter: p.f || "", view: p.v || "" }));
      this.error.hidden = true;
      this.doc = doc;
      this.rows = rowsOf(doc, this.app.expNames);
      this.cells = cellsOf(doc);
      this.nextCell = this.rows.length;
      this.differs = new Set(doc.differs);
      // the columns any row has: the answer's keys (live rows add theirs)
      this.keySets = { params: new Set(Object.keys(doc.params)), metrics: new Set(Object.keys(doc.metrics)), tags: new Set(Object.keys(doc.tags)) };
    } catch (err) {
      this.error.textContent = err.message;
      this.error.hidden = false;
      this.rows = [];
      this.cells = { params: {}, metrics: {}, tags: {} };
      this.nextCell = 0;
      this.differs = new Set();
      this.keySets = { params: new Set(), metrics: new Set(), tags: new Set() };
    }
    this.setupColumns();
    this.sort();
    this.render();
    this.app.watchRuns(this, p.e ? [p.e] : ["all"]);
    performance.mark("runs-table-rendered");
    this.root.dataset.loadMs = String(Math.round(performance.now() - t0));
    this.root.dataset.ready = "1";
  }

  setupColumns() {
    const multi = !this.params.e;
    let ids = (this.params.c || "").split(",").filter(Boolean);
    this.keys = {
      params: [...this.keySets.params].sort(), metrics: [...this.keySets.metrics].sort(), tags: [...this.keySets.tags].sort(),
    };
    if (!ids.length) {
      ids = ["a:name", "a:status", "a:start", "a:duration"];
      if (multi) ids.push("a:exp");
      ids.push(...[...this.differs].slice(0, 6).map((k) => "p:" + k));
      ids.push(...this.keys.metrics.slice(0, 6).map((k) => "m:" + k));
    }
    this.columns = [ATTRS[0], ...ids.filter((id) => id !== "a:id").map((id) => column(id, this.differs, this.cells)).filter(Boolean)];
    const body = clear(this.picker.querySelector(".picker-body"));
    const shown = new Set(this.columns.map((c) => c.id));
    const group = (title, list) => h("fieldset", {}, h("legend", { text: title }),
      ...list.map(([id, label]) => h("label", {},
        h("input", { type: "checkbox", checked: shown.has(id), dataset: { col: id }, onchange: () => this.pickColumns() }),
        " ", label)));
    body.append(
      group("run", ATTRS.slice(1).map((a) => [a.id, a.label])),
      group("params", this.keys.params.map((k) => ["p:" + k, (this.differs.has(k) ? "≠ " : "") + k])),
      group("metrics", this.keys.metrics.map((k) => ["m:" + k, k])),
      group("tags", this.keys.tags.map((k) => ["t:" + k, k])),
    );
  }

  pickColumns() {
    const ids = [...this.picker.querySelectorAll("input[data-col]")].filter((i) => i.checked).map((i) => i.dataset.col);
    this.params.c = ids.join(",");
    this.app.replace(makeHash("runs", "", this.params));
    this.setupColumns();
    this.render();
  }

  sort() {
    const spec = this.params.s || "";
    const cut = spec.lastIndexOf(":");
    const id = cut > 1 ? spec.slice(0, cut) : spec;
    const desc = spec.endsWith(":desc");
    const col = id ? column(id, this.differs, this.cells) : null;
    this.view = this.rows.map((_, i) => i);
    if (col) {
      const vals = this.rows.map((r) => col.get(r));
      this.view.sort((a, b) => {
        const av = vals[a], bv = vals[b];
        const missing = (av === null || av === undefined) - (bv === null || bv === undefined);
        if (missing) return missing; // missing last, either direction
        const c = compareValues(av, bv);
        return desc ? -c : c;
      });
    }
    this.sortId = id;
    this.sortDesc = desc;
  }

  setSort(id) {
    const desc = this.sortId === id ? !this.sortDesc : id.startsWith("m:") || id === "a:start";
    this.params.s = `${id}:${desc ? "desc" : "asc"}`;
    const t0 = performance.now();
    this.sort();
    this.render();
    this.root.dataset.sortMs = String(Math.round(performance.now() - t0));
    this.app.replace(makeHash("runs", "", this.params));
  }

  render() {
    const head = h("tr", {}, h("th", { class: "sel" },
      h("input", { type: "checkbox", "aria-label": "select all", title: "select all shown", onchange: (e) => this.selectAll(e.target.checked) })),
    ...this.columns.map((c) => {
      const mark = this.sortId === c.id ? (this.sortDesc ? " ▼" : " ▲") : "";
      return h("th", {
        class: [c.kind || "attr", c.differs ? "differs" : ""].join(" "),
        title: c.differs ? "differs between runs" : c.label,
        dataset: { col: c.id },
        onclick: () => this.setSort(c.id),
      }, (c.differs ? "≠ " : "") + c.label + mark);
    }));
    clear(this.thead).append(head);
    this.count.textContent = `${fmtCount(this.view.length)} runs · ${this.selected.size} selected`;
    this.renderRows(true);
  }

  renderRows(force) {
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(this.view.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    if (!force && first === this.first && last === this.last) return;
    this.first = first;
    this.last = last;
    const before = h("tr", { class: "spacer" });
    before.style.height = `${first * ROW_H}px`;
    const after = h("tr", { class: "spacer" });
    after.style.height = `${(this.view.length - last) * ROW_H}px`;
    const rows = [];
    for (let i = first; i < last; i++) rows.push(this.rowEl(i));
    clear(this.tbody).append(before, ...rows, after);
  }

  rowEl(i) {
    const r = this.rows[this.view[i]];
    const sel = this.isSelected(r.id);
    const tr = h("tr", {
      class: [i === this.cursor ? "cursor" : "", sel ? "selected" : ""].join(" "),
      dataset: { id: r.id, index: i },
      onclick: (e) => { if (e.target.tagName !== "INPUT" && e.target.tagName !== "A") this.setCursor(i); },
      ondblclick: () => this.open(i),
    }, h("td", { class: "sel" }, h("input", { type: "checkbox", checked: sel, "aria-label": "select", onchange: () => this.toggle(r.id) })));
    for (const c of this.columns) {
      const text = c.show ? c.show(r) : c.get(r) ?? "";
      let cell;
      if (c.id === "a:id") cell = h("td", { class: "id" }, h("a", { href: makeHash("run", shortId(r.id)), text }));
      else if (c.id === "a:status") cell = h("td", {}, h("span", { class: "status " + (STATUSES[r.status] || ""), text: (STATUSES[r.status] || r.status || "").toString() }));
      else cell = h("td", { class: c.kind === "metrics" ? "num" : c.differs ? "differs" : "", text, title: text.length > 24 ? text : null });
      if (i === 0 && c.id === "a:name") cell.setAttribute("elementtiming", "runs-first-row"); // when the rows were painted
      tr.append(cell);
    }
    return tr;
  }

  isSelected(id) {
    return this.selected.has(id) || this.selected.has(shortId(id));
  }

  toggle(id) {
    if (this.isSelected(id)) { this.selected.delete(id); this.selected.delete(shortId(id)); }
    else this.selected.add(shortId(id));
    this.params.sel = [...this.selected].join(",");
    this.app.replace(makeHash("runs", "", this.params));
    this.render();
  }

  selectAll(on) {
    this.selected = new Set(on ? this.view.slice(0, 100).map((i) => shortId(this.rows[i].id)) : []);
    this.params.sel = [...this.selected].join(",");
    this.app.replace(makeHash("runs", "", this.params));
    this.render();
  }

  setCursor(i) {
    this.cursor = Math.max(0, Math.min(this.view.length - 1, i));
    const y = this.cursor * ROW_H;
    const head = this.thead.offsetHeight || ROW_H;
    if (y < this.scroller.scrollTop) this.scroller.scrollTop = y;
    else if (y + ROW_H + head > this.scroller.scrollTop + this.scroller.clientHeight)
      this.scroller.scrollTop = y + ROW_H + head - this.scroller.clientHeight;
    this.renderRows(true);
  }

  open(i) {
    const r = this.rows[this.view[i ?? this.cursor]];
    if (r) this.app.go(makeHash("run", shortId(r.id)));
  }

  compare() {
    if (!this.selected.size) {
      this.error.textContent = "select runs first (x, or the boxes), then compare (c)";
      this.error.hidden = false;
      return;
    }
    this.app.go(makeHash("compare", "", { r: [...this.selected].join(",") }));
  }

  onKey(e) {
    const k = e.key;
    if (k === "j" || k === "ArrowDown") this.setCursor(this.cursor + 1);
    else if (k === "k" || k === "ArrowUp") this.setCursor(this.cursor - 1);
    else if (k === "x" || k === " ") { const r = this.rows[this.view[this.cursor]]; if (r) this.toggle(r.id); }
    else if (k === "Enter" || k === "o") this.open();
    else if (k === "c") this.compare();
    else if (k === "/") this.filter.focus();
    else if (k === "Escape" && this.selected.size) { this.selected.clear(); this.params.sel = ""; this.app.replace(makeHash("runs", "", this.params)); this.render(); }
    else return false;
    return true;
  }

  // Live: new runs and changed rows, from the server's stream.
  onRuns(event) {
    if (this.params.f) { // a filter decides which rows belong: ask the server again
      clearTimeout(this.reload);
      this.reload = setTimeout(() => this.load(), 300);
      return;
    }
    const byId = new Map(this.rows.map((r, i) => [r.id, i]));
    for (const c of event.changed) {
      if (this.params.e && c.exp !== this.params.e) continue;
      const { params, metrics, tags, ...fields } = c;
      const row = { ...fields, expName: this.app.expNames[c.exp] || c.exp };
      for (const kind of KINDS) for (const k in c[kind]) this.keySets[kind].add(k);
      if (byId.has(c.id)) { // its cells stay where they were
        const at = byId.get(c.id);
        row.i = this.rows[at].i;
        this.rows[at] = row;
      } else { // a new run: newest first, as the server orders them; its cells after every other
        row.i = this.nextCell++;
        this.rows.unshift(row);
        this.rows.forEach((r, i) => byId.set(r.id, i));
      }
      setCells(this.cells, row.i, c);
    }
    if (event.gone.length) {
      const gone = new Set(event.gone);
      this.rows = this.rows.filter((r) => !gone.has(r.id));
    }
    this.sort();
    this.render();
  }
}
