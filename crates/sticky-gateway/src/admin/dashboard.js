"use strict";
(function () {
  const INTERVAL_MS = 1000;
  const OUTCOMES = [
    ["pinned", "Pinned", "var(--o-pinned)"],
    ["new", "New", "var(--o-new)"],
    ["repinned", "Repinned", "var(--o-repinned)"],
    ["temporary", "Temporary", "var(--o-temporary)"],
    ["rejected", "Rejected", "var(--o-rejected)"],
  ];

  const $ = (id) => document.getElementById(id);
  const cards = new Map();    // route \0 id -> card parts
  const sections = new Map(); // route name -> section parts
  let prev = null;            // { t, backends: Map(key -> {requests, new_sessions}) }

  /** Creates an element: h("div", {class: "x"}, child, "text", ...). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v);
    }
    for (const c of children) el.append(c);
    return el;
  }

  function compact(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(n >= 1e10 ? 0 : 1) + "G";
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + "k";
    return String(Math.round(n));
  }
  function rate(n) { return n >= 100 ? compact(n) : n.toFixed(1); }
  function pct(x) { return (x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0) + "%"; }
  function secs(s) {
    if (s == null) return "–";
    if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + " ms";
    return s.toFixed(2) + " s";
  }
  function setText(el, text) { if (el.textContent !== text) el.textContent = text; }
  function setWidth(el, frac) { el.style.width = (Math.max(0, Math.min(1, frac)) * 100).toFixed(1) + "%"; }
  function sum(pairs) { return pairs.reduce((a, [, n]) => a + n, 0); }

  // The admin token, when the gateway asks for one: kept for this tab only
  // (sessionStorage), sent as a bearer token, never put in a URL or cookie.
  const TOKEN_KEY = "sticky-admin-token";
  let token = sessionStorage.getItem(TOKEN_KEY) || "";

  class Unauthorized extends Error {}

  /** Shows the sign-in form; a token that was in use is forgotten. */
  function needLogin() {
    if (token) {
      token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      setText($("login-error"), "That token was refused.");
    }
    document.body.classList.add("locked");
    if ($("login").hidden) {
      $("login").hidden = false;
      $("login-token").focus();
    }
  }

  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("login-token").value.trim();
    if (!t) return;
    token = t;
    sessionStorage.setItem(TOKEN_KEY, t);
    $("login-token").value = "";
    setText($("login-error"), "");
    $("login").hidden = true;
    document.body.classList.remove("locked");
    refresh();
  });

  /** fetch() with the token; a 401 asks for one. */
  async function api(path, init) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const r = await fetch(path, Object.assign({ cache: "no-store", headers }, init || {}));
    if (r.status === 401) {
      needLogin();
      throw new Unauthorized("admin token required");
    }
    return r;
  }

  let toastTimer = 0;
  function toast(msg, isError) {
    const t = $("toast");
    t.textContent = msg;
    t.className = "toast show" + (isError ? " error" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.className = "toast" + (isError ? " error" : ""); }, 3000);
  }

  async function act(action, id, button) {
    button.classList.add("busy");
    button.disabled = true;
    try {
      const r = await api("backends/" + encodeURIComponent(id) + "/" + action, { method: "POST" });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
      const rev = r.headers.get("sticky-store-revision");
      toast(id + " is now " + (body.state || action) + (rev ? " (stored at revision " + rev + ", every replica follows)" : ""));
    } catch (e) {
      toast("Could not " + action + " " + id + ": " + e.message, true);
    } finally {
      button.classList.remove("busy");
      await refresh();
    }
  }

  function meter(label, kind) {
    const val = h("span", { class: "val" });
    const ghost = h("div", { class: "bar-ghost" });
    const fill = h("div", { class: "bar-fill " + kind });
    const el = h("div", { class: "meter" },
      h("div", { class: "meter-label" }, h("span", { text: label }), val),
      h("div", { class: "bar", role: "img" }, ghost, fill));
    return { el, val, ghost, fill, bar: el.lastChild };
  }

  function num(label) {
    const v = h("div", { class: "v" });
    return { el: h("div", {}, h("div", { class: "k", text: label }), v), v };
  }

  function makeCard(b) {
    const name = h("div", { class: "name", text: b.id });
    const addr = h("div", { class: "addr" });
    const state = h("span", { class: "badge state" });
    const health = h("span", { class: "badge health" });
    const traffic = meter("Traffic share", "traffic");
    const sessions = meter("New sessions share", "sessions");
    const inflight = num("In flight"), active = num("Sessions"), hit = num("Pinned hits"), reqs = num("Requests"), fails = num("Failures");
    active.el.title = "Distinct sessions seen within the idle timeout (estimate)";
    const note = h("div", { class: "note", hidden: "" });
    const drain = h("button", { class: "drain", "data-action": "drain", "data-id": b.id, type: "button", text: "Drain", "aria-label": "Drain " + b.id, title: "Keep its sessions, send it no new ones" });
    const activate = h("button", { class: "activate", "data-action": "activate", "data-id": b.id, type: "button", text: "Activate", "aria-label": "Activate " + b.id, title: "Take new sessions again" });
    drain.addEventListener("click", () => act("drain", b.id, drain));
    activate.addEventListener("click", () => act("activate", b.id, activate));
    const el = h("article", { class: "card", "data-backend": b.id, "data-route": b.route },
      h("div", { class: "card-head" }, h("div", {}, name, addr), h("div", { class: "badges" }, state, health)),
      traffic.el, sessions.el,
      h("div", { class: "nums" }, inflight.el, active.el, hit.el, reqs.el, fails.el),
      note,
      h("div", { class: "actions" }, drain, activate));
    return { el, addr, state, health, traffic, sessions, inflight, active, hit, reqs, fails, note, drain, activate };
  }

  function makeSection(r) {
    const title = h("h2", { text: r.name });
    const prefix = h("code", { class: "prefix", text: r.prefix });
    const meta = h("span", { class: "meta" });
    const grid = h("div", { class: "backends" });
    const stack = h("div", { class: "stack", role: "img", "aria-label": "outcomes" });
    const legend = h("div", { class: "legend" });
    const parts = {};
    for (const [key, label, color] of OUTCOMES) {
      const seg = h("span", { style: "background:" + color + ";width:0" });
      stack.append(seg);
      const v = h("div", { class: "v", text: "0" });
      const rs = h("div", { class: "r" });
      legend.append(h("div", { class: "item", "data-outcome": key },
        h("div", { class: "k" }, h("i", { style: "background:" + color }), label), v, rs));
      parts[key] = { seg, v, rs };
    }
    const reasons = h("div", { class: "chips reasons" });
    const invalid = h("div", { class: "chips" });
    const el = h("section", { class: "route", "data-route": r.name },
      h("div", { class: "route-head" }, title, prefix, meta),
      grid,
      h("div", { class: "panels" },
        h("div", { class: "panel" }, h("h3", { text: "Affinity outcomes" }), stack, legend, reasons),
        h("div", { class: "panel" }, h("h3", { text: "Invalid tokens" }), invalid)));
    return { el, prefix, meta, grid, parts, reasons, invalid };
  }

  function updateCard(c, b, share) {
    setText(c.addr, b.address);
    c.el.dataset.state = b.state;
    c.el.dataset.health = b.health;
    setText(c.state, b.state);
    c.state.className = "badge state s-" + b.state;
    setText(c.health, b.health);
    c.health.className = "badge health h-" + b.health;

    for (const [m, s] of [[c.traffic, share.traffic], [c.sessions, share.sessions]]) {
      setWidth(m.fill, s.live ? s.now : s.all);
      setWidth(m.ghost, s.live ? s.all : 0);
      m.fill.classList.toggle("historic", !s.live);
      m.val.replaceChildren(pct(s.live ? s.now : s.all), h("small", { text: s.live ? "  " + rate(s.rate) + "/s" : "  since start" }));
      m.bar.setAttribute("aria-label", pct(s.live ? s.now : s.all));
    }
    setText(c.inflight.v, compact(b.in_flight));
    setText(c.active.v, compact(b.active_sessions || 0) +
      (b.fleet_active_sessions !== undefined ? " · fleet " + compact(b.fleet_active_sessions) : ""));
    setText(c.hit.v, b.requests ? pct(b.pinned_hit_rate) : "–");
    setText(c.reqs.v, compact(b.requests));
    setText(c.fails.v, compact(b.failures));
    c.fails.v.classList.toggle("bad", b.failures > 0);

    let note = "", cls = "";
    if (b.state === "draining" || b.state === "removed") {
      const live = share.traffic.rate;
      // The server's verdict (GET /backends/NAME/drained): no session
      // within the idle timeout and nothing in flight.
      const minutes = Math.round((b.session_window_seconds || 0) / 60);
      // With a shared store, the sessions any replica saw count too.
      const fleet = b.fleet_active_sessions;
      const sessions = fleet !== undefined ? fleet : (b.active_sessions || 0);
      if (b.drained && !(fleet > 0)) {
        note = "No session in the last " + minutes + " min" + (fleet !== undefined ? " on any replica" : "") + " and nothing in flight: safe to stop."; cls = "safe";
      } else {
        note = "Draining: " + compact(sessions) + " sessions in the last " + minutes + " min" + (fleet !== undefined ? " (all replicas)" : "") + ", " + rate(live) + " req/s, " + b.in_flight + " in flight."; cls = "drain";
      }
    } else if (b.state === "ejected" || b.health === "unhealthy") {
      note = "Failing: its sessions are served by other backends."; cls = "down";
    }
    c.note.hidden = !note;
    setText(c.note, note);
    c.note.className = "note " + cls;
    c.drain.disabled = !!share.refused || b.state === "draining" || c.drain.classList.contains("busy");
    c.activate.disabled = !!share.refused || b.state === "active" || c.activate.classList.contains("busy");
    for (const button of [c.drain, c.activate]) {
      if (share.refused) button.title = share.refused; else button.removeAttribute("title");
    }
  }

  function updateSection(s, r, backends) {
    setText(s.prefix, r.prefix);
    const repinned = sum(r.repinned), temporary = sum(r.temporary), rejected = sum(r.rejected);
    const counts = { pinned: r.pinned, new: r.new, repinned, temporary, rejected };
    const total = Object.values(counts).reduce((a, n) => a + n, 0);
    for (const [key] of OUTCOMES) {
      const p = s.parts[key];
      setWidth(p.seg, total ? counts[key] / total : 0);
      setText(p.v, compact(counts[key]));
      setText(p.rs, total ? pct(counts[key] / total) : "");
    }
    const chips = [];
    for (const [key, list] of [["repinned", r.repinned], ["temporary", r.temporary], ["rejected", r.rejected]]) {
      for (const [reason, n] of list) {
        if (n > 0) chips.push(h("span", { class: "chip" + (key === "rejected" ? " warn" : ""), "data-reason": key + ":" + reason },
          key + " · " + reason.replace(/_/g, " "), h("b", { text: compact(n) })));
      }
    }
    s.reasons.replaceChildren(...chips);
    const inv = r.invalid_tokens.filter(([, n]) => n > 0).map(([reason, n]) =>
      h("span", { class: "chip warn", "data-reason": reason }, reason.replace(/_/g, " "), h("b", { text: compact(n) })));
    s.invalid.replaceChildren(...(inv.length ? inv : [h("span", { class: "none", text: "None presented: every cookie opened cleanly." })]));
    const active = backends.filter((b) => b.state === "active").length;
    setText(s.meta, backends.length + " backend" + (backends.length === 1 ? "" : "s") + " · " + active + " active");
  }

  function render(backends, stats) {
    const now = performance.now();
    const dt = prev ? (now - prev.t) / 1000 : 0;
    const byRoute = new Map();
    for (const r of stats.routes) byRoute.set(r.name, []);
    for (const b of backends) {
      if (!byRoute.has(b.route)) byRoute.set(b.route, []);
      byRoute.get(b.route).push(b);
    }
    const routeInfo = new Map(stats.routes.map((r) => [r.name, r]));
    const seenCards = new Set(), seenSections = new Set();
    const next = new Map();
    const container = $("routes");
    let totRate = 0, totNew = 0, totReq = 0, totNewAll = 0, totHits = 0, totInflight = 0, active = 0;

    for (const [route, list] of byRoute) {
      const r = routeInfo.get(route) || { name: route, prefix: "", pinned: 0, new: 0, repinned: [], temporary: [], rejected: [], invalid_tokens: [] };
      let sec = sections.get(route);
      if (!sec) { sec = makeSection(r); sections.set(route, sec); }
      container.append(sec.el);
      seenSections.add(route);

      const deltas = list.map((b) => {
        const key = b.route + "\0" + b.id;
        next.set(key, { requests: b.requests, new_sessions: b.new_sessions });
        const p = prev && prev.backends.get(key);
        return p ? { req: Math.max(0, b.requests - p.requests), ses: Math.max(0, b.new_sessions - p.new_sessions), known: true }
                 : { req: 0, ses: 0, known: false };
      });
      const allReq = list.reduce((a, b) => a + b.requests, 0);
      const allSes = list.reduce((a, b) => a + b.new_sessions, 0);
      const dReq = deltas.reduce((a, d) => a + d.req, 0);
      const dSes = deltas.reduce((a, d) => a + d.ses, 0);
      list.forEach((b, i) => {
        const key = b.route + "\0" + b.id;
        let c = cards.get(key);
        if (!c) { c = makeCard(b); cards.set(key, c); }
        sec.grid.append(c.el);
        seenCards.add(key);
        const d = deltas[i];
        const share = {
          traffic: { live: dt > 0 && dReq > 0 ? true : (prev ? false : null), now: dReq ? d.req / dReq : 0, all: allReq ? b.requests / allReq : 0, rate: dt > 0 && d.known ? d.req / dt : 0 },
          sessions: { live: dt > 0 && dSes > 0, now: dSes ? d.ses / dSes : 0, all: allSes ? b.new_sessions / allSes : 0, rate: dt > 0 && d.known ? d.ses / dt : 0 },
          // A source that owns drain (Kubernetes) refuses the buttons: say why.
          refused: stats.store && stats.store.intent_refused && stats.store.route === b.route ? stats.store.intent_refused : null,
        };
        updateCard(c, b, share);
        totRate += share.traffic.rate; totNew += share.sessions.rate;
        totReq += b.requests; totNewAll += b.new_sessions; totHits += b.pinned_hits; totInflight += b.in_flight;
        if (b.state === "active") active++;
      });
      updateSection(sec, r, list);
    }
    for (const [k, c] of cards) if (!seenCards.has(k)) { c.el.remove(); cards.delete(k); }
    for (const [k, s] of sections) if (!seenSections.has(k)) { s.el.remove(); sections.delete(k); }
    prev = { t: now, backends: next };

    $("empty").hidden = backends.length > 0;
    setText($("t-rps"), dt > 0 ? rate(totRate) : "–");
    setText($("t-req"), compact(totReq) + " requests since start");
    setText($("t-nps"), dt > 0 ? rate(totNew) : "–");
    setText($("t-new"), compact(totNewAll) + " sessions since start");
    setText($("t-hit"), totReq ? pct(totHits / totReq) : "–");
    setText($("t-inflight"), compact(totInflight));
    setText($("t-backends"), active + " of " + backends.length + " backends active");
    const lat = stats.latency || {};
    setText($("t-lat"), lat.count ? secs(lat.p50_seconds) : "–");
    setText($("t-latn"), lat.count ? "p99 " + secs(lat.p99_seconds) : "no requests timed yet");
    const invalid = stats.routes.reduce((a, r) => a + sum(r.invalid_tokens), 0);
    setText($("t-invalid"), compact(invalid));
    renderStore(stats.store);
  }

  /** The shared state source (etcd, Kubernetes): connected or not, since
   *  when, and which replicas have applied the last drain or activation
   *  (or, when the source owns drain, how to drain there). */
  function renderStore(s) {
    const el = $("store");
    el.hidden = !s;
    if (!s) return;
    const badge = $("store-state");
    const age = s.last_sync_age_seconds;
    let text;
    if (s.connected) {
      setText(badge, s.engine + " connected");
      badge.className = "badge ok";
      text = "route " + s.route + " · revision " + s.revision;
    } else {
      setText(badge, s.stale ? s.engine + " unreachable · cached state" : s.engine + " unreachable");
      badge.className = "badge " + (s.stale ? "stale" : "down");
      text = "serving the state as of revision " + s.snapshot_revision +
        (age == null ? " (never synced since start)" : " · last sync " + secs(age) + " ago") +
        (s.intent_refused ? "" : " · drain and activate refused until it is back");
    }
    setText($("store-text"), text);
    if (s.intent_refused) {
      setText($("store-ack"), s.intent_refused);
      $("store-replicas").replaceChildren();
      return;
    }
    const live = s.replicas.length;
    setText($("store-ack"), s.intent_revision > 0
      ? "Last drain/activate (revision " + s.intent_revision + ") acknowledged by " +
        s.replicas.filter((r) => r.applied_revision >= s.intent_revision).length + " of " + live + " replicas"
      : live + " live replica" + (live === 1 ? "" : "s"));
    $("store-replicas").replaceChildren(...s.replicas.map((r) =>
      h("span", { class: r.this ? "me" : "", text: r.id + " @" + r.applied_revision + (r.this ? " (this)" : "") })));
  }

  let inFlight = null;
  function refresh() {
    if (inFlight) return inFlight;
    // While the sign-in form is up, calls would only be refused.
    if (!$("login").hidden) return Promise.resolve();
    inFlight = (async () => {
      try {
        const [b, s] = await Promise.all([
          api("backends").then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); }),
          api("stats").then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); }),
        ]);
        render(b, s);
        $("live").dataset.status = "ok";
        setText($("live-text"), "live · " + new Date().toLocaleTimeString());
        document.body.classList.remove("stale");
      } catch (e) {
        $("live").dataset.status = "error";
        setText($("live-text"), e instanceof Unauthorized ? "admin token required" : "gateway unreachable, retrying…");
        document.body.classList.add("stale");
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  }

  async function loop() {
    await refresh();
    setTimeout(loop, INTERVAL_MS);
  }
  loop();
})();
