// Small helpers shared by the views. Every string from the store is set as text (textContent or a
// text node), never parsed as markup: a run named "<img src=x onerror=...>" shows those characters.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// The store spells non-finite values as strings; the page turns them back into numbers.
export function toNumber(v) {
  if (v === "NaN") return NaN;
  if (v === "Infinity") return Infinity;
  if (v === "-Infinity") return -Infinity;
  return v;
}

export function fmtNumber(v) {
  v = toNumber(v);
  if (v === null || v === undefined) return "";
  if (typeof v !== "number") return String(v);
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
  return String(Number(v.toPrecision(4)));
}

// 10,214 → "10,214" (toLocaleString's first call loads the locale data: ~15 ms before a table shows)
export function fmtCount(n) {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "";
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}

export function fmtDuration(start, end, status) {
  if (start == null) return "";
  if (end == null) {
    if (status !== "RUNNING") return "";
    end = Date.now();
  }
  let s = Math.max(0, Math.round((end - start) / 1000));
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  s %= 60;
  if (d) return `${d}d${hh}h`;
  if (hh) return `${hh}h${String(m).padStart(2, "0")}m`;
  return `${m}m${String(s).padStart(2, "0")}s`;
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

export class ApiError extends Error {}

export function apiUrl(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.append(k, v);
  }
  const qs = q.toString();
  return path + (qs ? "?" + qs : "");
}

// The JSON of an answer, or an ApiError with the server's message.
export async function answer(pending) {
  const resp = await pending;
  const doc = await resp.json().catch(() => ({ error: `${resp.status} ${resp.statusText}` }));
  if (!resp.ok) throw new ApiError(doc.error || `${resp.status}`);
  return doc;
}

export function api(path, params) {
  const url = apiUrl(path, params);
  const early = window.miniMlflowEarly?.[url]; // sent by boot.js while the modules loaded: taken once
  if (early) delete window.miniMlflowEarly[url];
  return answer(early || fetch(url, { headers: { Accept: "application/json" } }));
}

export function download(name, blob) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// --- the view's state lives in the URL's hash: #/runs?f=...  #/run/<id>?x=step  #/compare?r=a,b
export function parseHash(hash) {
  const text = (hash || "").replace(/^#/, "") || "/runs";
  const [path, query] = text.split("?", 2);
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  const parts = path.split("/").filter(Boolean);
  return { view: parts[0] || "runs", arg: parts.slice(1).map(decodeURIComponent).join("/"), params };
}

export function makeHash(view, arg, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === "" || v === false) continue;
    q.set(k, v === true ? "1" : String(v));
  }
  const qs = q.toString().replace(/%2C/g, ",").replace(/%2F/g, "/").replace(/%3A/g, ":").replace(/%7E/g, "~");
  return `#/${view}${arg ? "/" + encodeURIComponent(arg) : ""}${qs ? "?" + qs : ""}`;
}

export const PALETTE = [
  "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939", "#e6550d", "#843c39", "#3182bd",
  "#31a354", "#756bb1", "#de9ed6", "#6baed6",
];
