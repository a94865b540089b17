// lifeline status page. Reads /api/v1/history once, then the status stream
// (/api/v1/events/stream, server-sent events) or, when the stream is refused, polls
// /api/v1/page. Builds the DOM with textContent only (reasons are free text) and draws
// the last hour as plain SVG lines. No library, nothing from outside this origin.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const POLL_MS = 1000;
  const STALE_S = 10;
  const HISTORY_RESYNC_MS = 5 * 60 * 1000;

  let history = { step: 10, window: 3600, t: [], links: {}, trunks: {} };
  let last = null; // the last message: {status, events, point}
  let lastAt = 0; // Date.now() when it came
  let mode = "connecting";
  let source = null;
  let pollTimer = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === "object" ? c : String(c));
    }
    return e;
  }

  // -- formatting --------------------------------------------------------------------
  const num = (v) => typeof v === "number" && isFinite(v);
  const pct = (v) => (num(v) ? (v * 100).toFixed(v < 0.1 ? 1 : 0) + "%" : "–");
  const ms = (v) => (num(v) ? (v * 1000).toFixed(v < 0.1 ? 1 : 0) + " ms" : "–");
  const mos = (v) => (num(v) ? v.toFixed(2) : "–");
  function dur(s) {
    if (!num(s)) return "–";
    s = Math.max(0, s);
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return Math.round(s / 86400) + " d";
  }
  function clock(ts) {
    const d = new Date(ts * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }
  function day(ts) {
    const d = new Date(ts * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
  }
  function when(ts) {
    const d = new Date(ts * 1000);
    const today = new Date().toDateString() === d.toDateString();
    return today ? clock(ts) : `${d.getMonth() + 1}/${d.getDate()} ${clock(ts)}`;
  }

  // -- plots -------------------------------------------------------------------------
  // One small line over the last hour; null values and gaps longer than two steps break
  // the line. y from 0 (or lo) to the larger of the data and a floor, so a quiet link
  // is a flat line at the bottom, not noise blown up to full height.
  function plot(label, times, values, fmt, opts) {
    const w = 300;
    const h = 60;
    const now = Date.now() / 1000;
    const x0 = now - plotSpan();
    const lo = opts.lo ?? 0;
    let hi = opts.floor ?? 0;
    for (const v of values) if (num(v) && v > hi) hi = v;
    if (opts.hi !== undefined) hi = Math.max(opts.hi, lo + 1e-9);
    if (hi <= lo) hi = lo + 1;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${label}, last hour`);
    const base = document.createElementNS(SVG, "line");
    base.setAttribute("x1", "0");
    base.setAttribute("x2", String(w));
    base.setAttribute("y1", String(h - 1));
    base.setAttribute("y2", String(h - 1));
    svg.append(base);
    let pts = [];
    let prevT = null;
    const flush = () => {
      if (pts.length) {
        const line = document.createElementNS(SVG, "polyline");
        // A lone point is drawn as a short dash, or it would not show at all.
        const one = pts.length === 1 && pts[0].split(",");
        line.setAttribute("points", one ? `${Math.max(0, one[0] - 4)},${one[1]} ${pts[0]}` : pts.join(" "));
        svg.append(line);
      }
      pts = [];
    };
    const gap = 2.5 * history.step;
    for (let i = 0; i < times.length; i++) {
      const t = times[i];
      const v = values[i];
      if (t < x0) continue;
      if (!num(v) || (prevT !== null && t - prevT > gap)) flush();
      if (num(v)) {
        const x = ((t - x0) / (now - x0)) * w;
        const y = h - 2 - ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * (h - 4);
        pts.push(`${x.toFixed(1)},${y.toFixed(1)}`);
      }
      prevT = t;
    }
    flush();
    const current = values.length ? values[values.length - 1] : null;
    return el("div", { class: "plot" },
      el("div", { class: "plot-label" }, el("span", {}, label, " ", el("b", {}, fmt(current))),
        el("span", { title: "top of the scale" }, `≤ ${fmt(hi)}`)),
      svg);
  }

  // The plots span the history there is, from a minute up to the window: a daemon that
  // started a few minutes ago shows its few minutes across the whole width.
  function plotSpan() {
    const now = Date.now() / 1000;
    const first = history.t.length ? history.t[0] : now;
    return Math.min(history.window, Math.max(60, now - first));
  }

  // The history's column plus the value of the snapshot being shown, so the line reaches now.
  function series(kind, name, key, nowValue, takenAt) {
    const cols = (history[kind][name] || {})[key] || [];
    const times = history.t.slice(0, cols.length);
    const values = cols.slice();
    if (num(takenAt)) {
      times.push(takenAt);
      values.push(nowValue);
    }
    return [times, values];
  }

  // -- sections ----------------------------------------------------------------------
  function metric(label, value) {
    return el("span", { class: "metric" }, el("span", {}, label), el("b", {}, value));
  }

  function renderGroups(st) {
    const cards = (st.groups || []).map((g) => {
      const active = (g.active || []).join(" + ") || "none";
      const decided = (g.decided || []).join(" + ") || "none";
      const moving = JSON.stringify(g.active) !== JSON.stringify(g.decided);
      const links = Object.fromEntries((st.links || []).map((l) => [l.name, l]));
      const state = (g.active || []).length === 0 ? "down"
        : (g.active || []).every((n) => links[n] && links[n].state === "up") ? "up" : "degraded";
      return el("div", { class: "card", "data-group": g.name, "data-state": state },
        el("div", { class: "card-head" }, el("h3", {}, g.name),
          el("span", { class: "muted" }, `table ${g.table} → ${g.destination}`)),
        el("div", { class: "active" }, active),
        moving ? el("div", { class: "reason" }, `moving to ${decided}`) : null,
        el("div", { class: "reason" }, g.reason || ""),
        el("div", { class: "muted" }, g.since_change === null ? "no change yet"
          : `changed ${dur(g.since_change)} ago`));
    });
    $("groups").replaceChildren(...cards);
  }

  function renderLinks(st) {
    const cards = (st.links || []).map((l) => {
      const [lt, lv] = series("links", l.name, "loss", l.loss_ratio, st.taken_at);
      const [at, av] = series("links", l.name, "latency", l.latency, st.taken_at);
      const [mt, mv] = series("links", l.name, "mos", l.mos, st.taken_at);
      return el("div", { class: "card", "data-link": l.name, "data-state": l.state },
        el("div", { class: "card-head" },
          el("h3", {}, l.name, " ", el("span", { class: "muted" }, `${l.interface} · tier ${l.tier}`)),
          el("span", { class: "badge state", "data-state": l.state }, l.state)),
        el("div", { class: "reason" }, l.reason || "",
          l.hold_down_remaining > 0 ? ` (hold-down ${dur(l.hold_down_remaining)})` : ""),
        el("div", { class: "metrics" },
          metric("loss", pct(l.loss_ratio)), metric("1-way", pct(l.loss_one_way)),
          metric("rtt", ms(l.latency)), metric("jitter", ms(l.jitter)), metric("MOS", mos(l.mos)),
          l.carrier === false ? el("span", { class: "badge crit" }, "no carrier") : null),
        el("div", { class: "plots" },
          plot("loss", lt, lv, pct, { floor: 0.05 }),
          plot("rtt", at, av, ms, { floor: 0.05 }),
          plot("MOS", mt, mv, mos, { lo: 1, hi: 4.5 })));
    });
    $("links").replaceChildren(...cards);
  }

  function renderTrunks(st) {
    const trunks = st.trunks || [];
    $("trunks-sec").hidden = trunks.length === 0;
    const cards = trunks.map((t) => {
      const [rt, rv] = series("trunks", t.name, "rtt", t.last_rtt, st.taken_at);
      const flags = [];
      if (t.maintenance !== null && t.maintenance !== undefined) {
        flags.push(el("span", { class: "badge warn" }, "maintenance"));
      }
      if (t.edge_tripped) flags.push(el("span", { class: "badge crit" }, "tripped"));
      if (t.registered === true) flags.push(el("span", { class: "badge info" }, "registered"));
      if (t.registered === false) flags.push(el("span", { class: "badge warn" }, "not registered"));
      const why = t.maintenance ? `in maintenance: ${t.maintenance}`
        : t.edge_tripped ? `fails calls at the edge: ${t.edge_tripped}` : t.reason || "";
      return el("div", { class: "card", "data-trunk": t.name, "data-state": t.state },
        el("div", { class: "card-head" }, el("h3", {}, t.name),
          el("span", {}, ...flags, " ", el("span", { class: "badge state", "data-state": t.state }, t.state))),
        el("div", { class: "reason" }, why),
        el("div", { class: "metrics" }, metric("OPTIONS rtt", ms(t.last_rtt)),
          metric("code", t.last_code ?? "–"), metric("DIDs", t.dids ?? 0)),
        el("div", { class: "plots" }, plot("OPTIONS rtt", rt, rv, ms, { floor: 0.05 })));
    });
    $("trunks").replaceChildren(...cards);
  }

  // The site's software (docs/services.md): each service's state, last answer and
  // certificate, the destinations that need it, and whether its being down has taken
  // one of them down, so that destination's DIDs ring at their DR destination.
  function renderServices(st) {
    const services = Array.isArray(st.services) ? st.services : [];
    $("services-sec").hidden = services.length === 0;
    const dests = Object.fromEntries((st.destinations || []).map((d) => [d.name, d]));
    const onDrForService = ((st.dids || {}).dr_by_cause || {}).service || 0;
    const cards = services.map((s) => {
      const needed = s.needed_by || [];
      const takes = s.state === "down"
        ? needed.filter((n) => dests[n] && dests[n].service_down) : [];
      const flags = [];
      if (takes.length) {
        flags.push(el("span", { class: "badge crit" }, onDrForService ? "DIDs to DR" : "destination down"));
      }
      if (s.cert === "expiring" || s.cert === "expired") {
        flags.push(el("span", { class: `badge ${s.cert === "expired" ? "crit" : "warn"}` }, `cert ${s.cert}`));
      }
      const cert = num(s.cert_days_left)
        ? `${Math.floor(s.cert_days_left)} d` + (num(s.cert_not_after) ? ` (${day(s.cert_not_after)})` : "")
        : null;
      const reason = s.reason || "";
      return el("div", { class: "card", "data-service": s.name, "data-state": s.state },
        el("div", { class: "card-head" },
          el("h3", {}, s.name, " ", el("span", { class: "muted" }, s.target || s.kind)),
          el("span", {}, ...flags, " ", el("span", { class: "badge state", "data-state": s.state }, s.state))),
        el("div", { class: "reason" }, reason,
          s.hold_down_remaining > 0 ? ` (hold-down ${dur(s.hold_down_remaining)})` : ""),
        el("div", { class: "metrics" },
          metric("latency", ms(s.latency)), metric("code", s.code ?? "–"),
          cert === null ? null : metric("cert", cert)),
        takes.length ? el("div", { class: "takes-down", "data-takes-down": takes.join(" ") },
          `${takes.join(", ")} counted down: ` + (onDrForService
            ? `${onDrForService} ${onDrForService === 1 ? "DID" : "DIDs"} on DR for a service`
            : "no DID on DR (no DR destination, or it is down too: see the DID plan)")) : null,
        el("div", { class: "muted", "data-needed-by": needed.join(" ") },
          needed.length ? `needed by ${needed.join(", ")}: down, their DIDs go to DR`
            : "alerts only: no destination needs it"),
        s.last_error && !reason.includes(s.last_error)
          ? el("div", { class: "muted", "data-last-error": "" }, `last failed check: ${s.last_error}`) : null);
    });
    $("services").replaceChildren(...cards);
  }

  function renderDids(st) {
    const d = st.dids;
    $("dids-sec").hidden = !d;
    if (!d) return;
    const rows = [
      el("div", { class: "dids-summary" },
        metric("numbers", d.numbers), metric("ranges", d.ranges),
        metric("unroutable", d.unroutable_numbers), metric("on DR", d.dr_numbers ?? 0)),
    ];
    const list = el("ul", { class: "list" });
    for (const r of d.notable || []) {
      list.append(el("li", { class: r.unroutable ? "crit" : "warn", "data-range": r.range },
        el("b", {}, r.range), " ",
        r.unroutable ? el("span", { class: "badge crit" }, "unroutable")
          : el("span", { class: "badge warn" }, "on DR"),
        r.unroutable ? null : ` → ${r.destination}`,
        el("div", { class: "reason" }, r.reason || "")));
    }
    if (d.notable_left_off) list.append(el("li", {}, `and ${d.notable_left_off} more`));
    if (!(d.notable || []).length) {
      list.append(el("li", { class: "ok" }, "every range has a trunk and its own destination"));
    }
    rows.push(list);
    $("dids").replaceChildren(...rows);
  }

  function renderEdges(st) {
    const edges = st.edges || [];
    $("edges-sec").hidden = edges.length === 0;
    $("edges").replaceChildren(...edges.map((e) => el("li",
      { class: e.in_sync ? "ok" : "warn", "data-edge": e.name },
      el("b", {}, e.name), ": ", e.in_sync ? "in sync" : e.error || "not pushed yet")));
  }

  function renderProblems(st) {
    const items = (st.problems || []).map((p) => el("li", { class: "warn" }, p));
    const cfg = st.config || {};
    if (cfg.reload_error) {
      items.push(el("li", { class: "warn" }, `config reload refused, the running config stays: ${cfg.reload_error}`));
    }
    const j = st.journal || {};
    if (j.mode === "memory") {
      items.push(el("li", { class: "warn" }, `journal in memory: ${j.problem || ""}`));
    }
    $("problems-sec").hidden = items.length === 0;
    $("problems").replaceChildren(...items);
  }

  // Operator overrides (kind, target, value, reason, by, since, until in epoch seconds,
  // applied, why_not):
  // shown whenever the status carries them, so nobody forgets a forced route.
  function renderOverrides(st) {
    const list = Array.isArray(st.overrides) ? st.overrides : [];
    $("overrides-sec").hidden = list.length === 0;
    const now = Date.now() / 1000;
    $("overrides").replaceChildren(...list.map((o) => el("li", { class: "warn", "data-override": o.target },
      el("b", {}, `${o.kind} ${o.target}`), o.value !== undefined && o.value !== null ? ` → ${o.value}` : "",
      el("div", { class: "reason" }, o.reason || ""),
      // A force or pin to a link/trunk that is down is held but not in force: say so, or
      // the page would show a route the site is not using.
      o.applied === false ? el("div", { class: "muted", "data-held": "" },
        `held, not applied: ${o.why_not || "see lifeline status"}`) : "",
      el("div", { class: "muted" },
        `by ${o.by || "?"}`, num(o.since) ? `, since ${when(o.since)}` : "",
        num(o.until) ? `, until ${when(o.until)} (in ${dur(o.until - now)})` : ", no expiry"))));
  }

  // The site's power (docs/power.md): the policy's phase and each UPS's last reading.
  function renderPower(st) {
    const p = st.power;
    if (!p) return; // no power section: "not monitored yet" stays
    const level = p.outage ? "crit" : p.state === "mains" ? "ok" : "warn";
    const head = el("div", { class: level, "data-power": p.phase },
      el("span", { class: `badge ${level}` }, p.state), " ",
      p.phase === "normal" ? "" : el("b", {}, p.phase === "dr" ? "DR: DID ranges on their DR destination" : p.phase),
      el("div", { class: "reason" }, p.reason || ""));
    const list = el("ul", { class: "list" });
    for (const u of p.ups || []) {
      const ok = u.state === "mains" ? "ok" : u.state === "unknown" ? "warn" : "crit";
      const figures = [
        num(u.charge) ? `charge ${pct(u.charge)}` : null,
        num(u.runtime) ? `runtime ${dur(u.runtime)}` : null,
        num(u.input_voltage) ? `input ${Math.round(u.input_voltage)} V` : null,
        num(u.load) ? `load ${pct(u.load)}` : null,
      ].filter((f) => f);
      list.append(el("li", { class: ok, "data-ups": u.name, "data-state": u.state },
        el("b", {}, u.name), ` (${u.protocol}) `,
        el("span", { class: `badge ${ok}` }, u.state), " ", (u.flags || []).join(" "),
        figures.length ? el("div", { class: "muted" }, figures.join(" · ")) : null,
        el("div", { class: "reason" }, u.reason || ""),
        u.read_ok === false ? el("div", { class: "muted" }, `last read failed: ${u.read_detail || ""}`) : null));
    }
    if (p.command) list.append(el("li", { class: "warn" }, `on_battery_low: ${p.command}`));
    const box = $("power");
    box.className = "";
    box.replaceChildren(head, list);
  }

  // The call recordings (docs/recordings.md): a card per backup (fresh or stale, what is
  // missing, different or corrupt there, named on expand, retention breaches, copies
  // verified), the store's disk and RAID, the verifier's coverage, and every other
  // finding that is not ok. Page-severity findings raise the banner (see banner()).
  const REC_COUNTS = [["missing", "missing", "missing"], ["mismatched", "mismatched", "mismatched"],
    ["corrupt", "corrupt", "corrupt"], ["gone", "dropped_early", "dropped early"]];
  const REC_LEVEL = { page: "crit", ticket: "warn", ok: "ok" };
  const REC_STATE = { page: "down", ticket: "degraded", ok: "up" };
  function bytes(n) {
    if (!num(n)) return "–";
    for (const [unit, scale] of [["TiB", 2 ** 40], ["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]]) {
      if (n >= scale) return `${(n / scale).toFixed(n / scale < 100 ? 1 : 0)} ${unit}`;
    }
    return `${n} B`;
  }
  function recWorst(findings) {
    return findings.some((f) => f.severity === "page") ? "page"
      : findings.some((f) => f.severity === "ticket") ? "ticket" : "ok";
  }
  function recNames(f, label) {
    if (!f || !(f.names || []).length) return null;
    return el("details", { class: "names", "data-names": f.check },
      el("summary", {}, `${label}: ${f.value}`),
      el("ul", {}, ...f.names.map((n) => el("li", {}, n)),
        f.names_left_off ? el("li", { class: "muted" }, `and ${f.names_left_off} more`) : null));
  }
  function renderRecordings(st) {
    const r = st.recordings;
    $("recordings-sec").hidden = !r;
    if (!r) return;
    if (r.judged_at === null || r.judged_at === undefined) {
      $("recordings").replaceChildren(el("div", { class: "muted" }, "not checked yet"));
      return;
    }
    const findings = r.findings || [];
    const of = (check, subject) => findings.find((f) => f.check === check && f.subject === subject);
    const sources = r.sources || [];
    const backups = sources.filter((s) => s.name !== "store");
    const shown = new Set(["available", "freshness", "missing", "mismatched", "corrupt", "gone"]);
    const cards = backups.map((b) => {
      const mine = findings.filter((f) => f.subject === b.name);
      const worst = b.available ? recWorst(mine) : (b.must_hold ? "page" : "ticket");
      const fresh = of("freshness", b.name);
      const badge = !b.available ? ["unavailable", REC_LEVEL[worst]]
        : fresh && fresh.severity === "page" ? ["stale", "crit"]
          : fresh && fresh.severity === "ticket" ? ["no backup run", "warn"] : ["fresh", "ok"];
      return el("div", { class: "card", "data-backup": b.name, "data-state": REC_STATE[worst] },
        el("div", { class: "card-head" },
          el("h3", {}, b.name, " ", el("span", { class: "muted" }, `${b.kind} ${b.where}`)),
          el("span", {}, b.must_hold ? null : el("span", { class: "badge info" }, "tickets only"), " ",
            el("span", { class: `badge ${badge[1]}` }, badge[0]))),
        el("div", { class: "reason" }, b.available ? (fresh ? fresh.reason : "")
          : `cannot be read: ${b.why_unavailable || "unknown"}`),
        b.available ? el("div", { class: "metrics" },
          metric("newest", dur(b.newest_age)),
          metric("recordings", b.scanned_at === null || b.scanned_at === undefined ? "–" : b.files),
          ...REC_COUNTS.map(([, key, label]) => metric(label, b[key] ?? "–")),
          metric("verified", b.verified ?? 0)) : null,
        ...REC_COUNTS.map(([check, , label]) => recNames(of(check, b.name), label)),
        ...mine.filter((f) => f.severity !== "ok" && !shown.has(f.check)).map((f) =>
          el("div", { class: "reason", "data-finding": f.check }, f.reason)));
    });

    const store = sources.find((s) => s.name === "store");
    const d = r.disk;
    const storeFindings = findings.filter((f) => f.subject === "store"
      || (d && (d.raid || []).some((a) => a.name === f.subject)));
    const parts = [];
    if (store) {
      parts.push(store.available ? `${store.files} recordings (${bytes(store.bytes)})`
        : `cannot be read: ${store.why_unavailable || "unknown"}`);
    }
    if (d) {
      parts.push(`disk ${bytes(d.avail_bytes)} free of ${bytes(d.total_bytes)}`
        + (num(d.days_left) ? `, ${d.days_left.toFixed(1)} d left` : ""));
      for (const a of d.raid || []) {
        parts.push(`${a.name} ${!a.active ? "inactive" : a.degraded ? "degraded" : "healthy"}`);
      }
    }
    const storeWorst = store && !store.available ? "page" : recWorst(storeFindings);
    const list = el("ul", { class: "list" },
      el("li", { class: REC_LEVEL[storeWorst], "data-store": "" },
        el("b", {}, "store"), " ", el("span", { class: "muted" }, store ? store.where : ""),
        el("div", {}, parts.join(" · ")),
        ...storeFindings.filter((f) => f.severity !== "ok").map((f) =>
          el("div", { class: "reason", "data-finding": f.check }, f.reason)),
        recNames(of("lost", "store"), "lost")));
    const v = r.verifier;
    const verify = v ? el("div", { class: "muted", "data-verifier": "" },
      `verified ${pct(v.period_coverage)} of the recordings this period (each once in `
      + `${v.verify_days} d, ${v.files_per_cycle} per cycle)`) : null;
    $("recordings").replaceChildren(list, el("div", { class: "grid rec-grid" }, ...cards), verify);
  }

  // The banner's words for a recordings finding that pages.
  function recWords(f) {
    const n = num(f.value) ? f.value : "";
    switch (f.check) {
      case "freshness": return `${f.subject} stale`;
      case "available": return `${f.subject} unavailable`;
      case "missing": return `${n} missing from ${f.subject}`;
      case "mismatched": return `${n} mismatched in ${f.subject}`;
      case "corrupt": return `${n} corrupt in ${f.subject}`;
      case "gone": return `${n} dropped early from ${f.subject}`;
      case "lost": return `${n} lost`;
      case "raid": return `${f.subject} degraded`;
      case "disk_days": return "disk filling";
      default: return `${f.subject} ${f.check}`;
    }
  }

  function renderEvents(events) {
    const items = (events || []).slice().reverse().map((e) => el("li", {},
      el("time", {}, when(e.ts)), el("span", { class: "kind", "data-kind": e.kind }, e.kind),
      el("b", {}, e.subject), el("span", {}, e.message)));
    $("events").replaceChildren(...items);
  }

  function banner(st) {
    const links = st.links || [];
    const dids = st.dids || {};
    const groups = st.groups || [];
    const lines = [];
    let level = "ok";
    const raise = (to) => { if (to === "crit" || (to === "warn" && level === "ok")) level = to; };
    const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
    if (dids.unroutable_numbers > 0) { raise("crit"); lines.push(`${plural(dids.unroutable_numbers, "DID", "DIDs")} unroutable`); }
    const nowhere = groups.filter((g) => (g.active || []).length === 0);
    if (nowhere.length) { raise("crit"); lines.push(`no route: ${nowhere.map((g) => g.name).join(", ")}`); }
    const down = links.filter((l) => l.state !== "up");
    if (down.length) { raise("warn"); lines.push(`${down.map((l) => `${l.name} ${l.state}`).join(", ")}`); }
    for (const g of groups) {
      if ((g.active || []).length) {
        const best = links.filter((l) => l.tier === Math.min(...links.map((k) => k.tier)));
        const onBest = (g.active || []).some((n) => best.some((b) => b.name === n));
        if (!onBest) { raise("warn"); lines.push(`${g.name} on ${(g.active || []).join(" + ")}`); }
      }
    }
    const trunksDown = (st.trunks || []).filter((t) => t.state === "down");
    if (trunksDown.length) { raise("warn"); lines.push(`trunk down: ${trunksDown.map((t) => t.name).join(", ")}`); }
    if (dids.dr_numbers > 0) {
      raise("warn");
      const causes = Object.keys(dids.dr_by_cause || {}).filter((c) => dids.dr_by_cause[c] > 0);
      lines.push(`${plural(dids.dr_numbers, "DID", "DIDs")} on DR${causes.length ? ` (${causes.join(", ")})` : ""}`);
    }
    const services = Array.isArray(st.services) ? st.services : [];
    const servicesDown = services.filter((s) => s.state === "down");
    if (servicesDown.length) { raise("warn"); lines.push(`service down: ${servicesDown.map((s) => s.name).join(", ")}`); }
    const certs = services.filter((s) => s.cert === "expiring" || s.cert === "expired");
    if (certs.length) {
      raise("warn");
      lines.push(`certificate expiring: ${certs.map((s) => `${s.name} (${s.cert === "expired" ? "expired" : `${Math.floor(s.cert_days_left)} d left`})`).join(", ")}`);
    }
    const power = st.power;
    if (power && power.outage) { raise("crit"); lines.push(power.phase === "dr" ? "power: DIDs to DR" : "power outage"); }
    else if (power && power.state !== "mains") { raise("warn"); lines.push(`power ${power.state}`); }
    const rec = st.recordings;
    if (rec) {
      const recPages = (rec.findings || []).filter((f) => f.severity === "page");
      const recTickets = (rec.findings || []).filter((f) => f.severity === "ticket");
      if (recPages.length) { raise("crit"); lines.push(`recordings: ${recPages.map(recWords).join(", ")}`); }
      else if (recTickets.length) { raise("warn"); lines.push(`recordings: ${plural(recTickets.length, "ticket", "tickets")}`); }
    }
    if ((st.edges || []).some((e) => !e.in_sync)) { raise("warn"); lines.push("SIP edge out of sync"); }
    if ((st.problems || []).length) { raise("warn"); lines.push(plural(st.problems.length, "problem", "problems")); }
    if (Array.isArray(st.overrides) && st.overrides.length) lines.push(plural(st.overrides.length, "override", "overrides"));
    const b = $("banner");
    b.dataset.level = level;
    b.textContent = lines.length ? lines.join(" · ") : "all links and trunks up";
  }

  function render(msg) {
    const st = msg.status;
    $("site").textContent = st.site;
    $("meta").textContent = `lifeline ${st.version}${st.dry_run ? " (dry run)" : ""} · up ${dur(st.uptime)} · ${st.failovers} failovers`;
    document.title = `${st.site}: lifeline`;
    document.body.dataset.takenAt = String(st.taken_at);
    banner(st);
    renderGroups(st);
    renderLinks(st);
    renderTrunks(st);
    renderServices(st);
    $("plot-span").textContent = `plots: last ${dur(plotSpan())}`;
    renderDids(st);
    renderEdges(st);
    renderProblems(st);
    renderOverrides(st);
    renderPower(st);
    renderRecordings(st);
    renderEvents(msg.events);
    tick();
  }

  // -- data ----------------------------------------------------------------------------
  function addPoint(p) {
    if (!p || (history.t.length && p.t <= history.t[history.t.length - 1])) return;
    const n = history.t.length;
    history.t.push(p.t);
    for (const kind of ["links", "trunks"]) {
      const have = history[kind];
      for (const [name, values] of Object.entries(p[kind] || {})) {
        const cols = have[name] || (have[name] = {});
        for (const [key, v] of Object.entries(values)) {
          const col = cols[key] || (cols[key] = new Array(n).fill(null));
          while (col.length < n) col.push(null);
          col.push(v);
        }
      }
      for (const cols of Object.values(have)) {
        for (const col of Object.values(cols)) while (col.length < n + 1) col.push(null);
      }
    }
    const keep = Math.floor(history.window / history.step);
    const drop = history.t.length - keep;
    if (drop > 0) {
      history.t.splice(0, drop);
      for (const kind of ["links", "trunks"]) {
        for (const cols of Object.values(history[kind])) {
          for (const col of Object.values(cols)) col.splice(0, drop);
        }
      }
    }
  }

  function receive(msg) {
    last = msg;
    lastAt = Date.now();
    addPoint(msg.point);
    render(msg);
  }

  async function loadHistory() {
    try {
      const r = await fetch("/api/v1/history", { cache: "no-store" });
      if (r.ok) history = await r.json();
      if (last) render(last);
    } catch (err) {
      // No history yet is not an error worth shouting about: the plots start empty.
    }
  }

  function setMode(m) {
    mode = m;
    const c = $("conn");
    c.dataset.mode = m;
    const age = lastAt ? ` · ${dur((Date.now() - lastAt) / 1000)} ago` : "";
    c.textContent = m + age;
  }

  function tick() {
    const stale = lastAt && (Date.now() - lastAt) / 1000 > STALE_S;
    if (stale && mode !== "offline") setMode("stale");
    else setMode(mode === "stale" ? (source ? "live" : "polling") : mode);
    const st = last && last.status;
    $("foot").textContent = st
      ? `snapshot ${when(st.taken_at)} · journal ${st.journal ? st.journal.path : "?"}`
      : "";
  }

  async function poll() {
    try {
      const r = await fetch("/api/v1/page", { cache: "no-store" });
      if (r.ok) {
        receive(await r.json());
        setMode("polling");
      }
    } catch (err) {
      setMode("offline");
    }
  }

  function startPolling() {
    if (pollTimer !== null) return;
    setMode("polling");
    poll();
    pollTimer = setInterval(poll, POLL_MS);
    setTimeout(() => { stopPolling(); connect(); }, 30000); // try the stream again
  }

  function stopPolling() {
    if (pollTimer !== null) clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    if (typeof EventSource === "undefined") { startPolling(); return; }
    source = new EventSource("/api/v1/events/stream");
    source.addEventListener("status", (e) => {
      stopPolling();
      setMode("live");
      receive(JSON.parse(e.data));
    });
    source.addEventListener("open", () => setMode("live"));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        source = null;
        startPolling(); // refused (too many streams) or not a stream: poll instead
      } else {
        setMode("offline"); // the browser reconnects by itself
      }
    });
  }

  loadHistory();
  connect();
  setInterval(tick, 1000);
  setInterval(loadHistory, HISTORY_RESYNC_MS);
})();
