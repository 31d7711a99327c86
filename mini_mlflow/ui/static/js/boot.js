// The page's first data requests, sent while its modules still load (a module runs only once the whole
// graph is fetched and compiled): the experiments, and the runs table when the address shows one.
// app.js takes an answer from here only if it asked for the very same URL; anything else is asked again.
"use strict";
(() => {
  const text = location.hash.replace(/^#/, "") || "/runs";
  const cut = text.indexOf("?");
  const path = cut < 0 ? text : text.slice(0, cut);
  const given = new URLSearchParams(cut < 0 ? "" : text.slice(cut + 1));
  const early = {};
  const ask = (url) => {
    early[url] = fetch(url, { headers: { Accept: "application/json" } });
    early[url].catch(() => {}); // the page reports a failure when it takes the answer
  };
  ask("/api/experiments");
  if ((path.split("/").filter(Boolean)[0] || "runs") === "runs") {
    const q = new URLSearchParams();
    for (const [name, from] of [["e", "e"], ["filter", "f"], ["view", "v"]]) {
      const value = given.get(from);
      if (value) q.append(name, value);
    }
    const qs = q.toString();
    ask("/api/runs" + (qs ? "?" + qs : ""));
  }
  window.miniMlflowEarly = early;
})();
