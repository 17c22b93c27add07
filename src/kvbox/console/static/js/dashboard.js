// The dashboard: what is stored, how busy each front door is (from the server's own
// counters, sampled every 2 s for the last ten minutes), and the server itself.

import { json } from "./api.js";
import { bytes, clear, count, duration, h, heading } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const DOORS = [["gwkv", "GW-KV", "--chart-1"], ["s3", "S3", "--chart-2"], ["console", "Console", "--chart-3"]];
const REFRESH_MS = 5000;

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// A line chart of `series` ([{name, color, points: [[t, y]...]}]) over [t0, t1].
function chart(title, unit, series, t0, t1, format) {
  const W = 420;
  const H = 180;
  const L = 72;
  const B = 24;
  const T = 8;
  const R = 8;
  const ys = series.flatMap((s) => s.points.map((p) => p[1]).filter((y) => y !== null));
  const top = niceMax(Math.max(0, ...ys));
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  const el = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", focusable: "false" });
  for (const f of [0, 0.5, 1]) {
    const v = top * f;
    el.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "axis" }));
    const label = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" });
    label.textContent = format(v);
    el.append(label);
  }
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const label = svg("text", { x: x(t), y: H - 6, "text-anchor": anchor });
    const ago = t1 - t0;
    label.textContent = t === t1 ? "now" : ago >= 90 ? `${Math.round(ago / 60)} min ago` : `${Math.round(ago)} s ago`;
    el.append(label);
  }
  const summary = [];
  for (const s of series) {
    const color = getComputedStyle(document.documentElement).getPropertyValue(s.color).trim();
    let d = "";
    let pen = false;
    for (const [t, v] of s.points) {
      if (v === null) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    }
    if (d) el.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
    const last = [...s.points].reverse().find((p) => p[1] !== null);
    summary.push(`${s.name} ${last ? format(last[1]) : "no data"}`);
  }
  el.setAttribute("aria-label", `${title}, latest: ${summary.join(", ")}`);
  const legend = h("div", { class: "legend" }, series.map((s) =>
    h("span", { class: `swatch ${s.color.slice(2)}` }, h("span", {}, s.name))));
  return h("figure", { class: "card figure" }, h("figcaption", {}, h("strong", {}, title), h("span", { class: "muted" }, ` (${unit})`)), el, legend);
}

function stat(label, value, id) {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value", id }, value));
}

export async function render(root, params, ctx) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  root.append(heading("Dashboard"), body);

  async function refresh(background = false) {
    // The timer's refreshes say so: they must not keep an idle session alive.
    const d = await json("GET", "dashboard", undefined, undefined, background ? { "X-Kvbox-Background": "1" } : undefined);
    if (!ctx.alive()) return false;
    const m = d.metrics;
    const doors = DOORS.filter(([k]) => m.doors[k]);
    const t1 = d.now;
    // The last ten minutes, or since the first sample when the server is younger.
    const first = Math.min(...doors.map(([k]) => (m.doors[k][0] ? m.doors[k][0].t : t1)));
    const t0 = Math.max(t1 - 10 * 60, Math.min(first, t1 - 60));
    const series = (pick) => doors.map(([k, name, color]) => ({ name, color, points: m.doors[k].map((p) => [p.t, pick(p)]) }));
    const cards = [
      stat("Objects stored", count(d.stored.objects), "stat-objects"),
      stat("Bytes stored", bytes(d.stored.bytes), "stat-bytes"),
      stat("Buckets you can list", count(d.stored.buckets), "stat-buckets"),
      stat("Server version", d.version, "stat-version"),
      stat("Uptime", duration(d.uptime), "stat-uptime"),
    ];
    if (d.disk) {
      cards.push(stat("Data directory size", bytes(d.disk.used), "stat-disk-used"));
      cards.push(stat("Free space", `${bytes(d.disk.free)} of ${bytes(d.disk.total)}`, "stat-disk-free"));
    } else if (d.data_dir === null && d.disk === null) {
      cards.push(stat("Data", "in memory (cache mode)", "stat-disk-used"));
    }
    const ms = (v) => {
      if (v === null) return "–";
      if (v >= 1) return `${v.toFixed(1)} s`;
      const n = v * 1000;
      return `${n >= 10 ? n.toFixed(0) : n >= 1 ? n.toFixed(1) : n.toFixed(2)} ms`;
    };
    const rate = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
    clear(body,
      h("div", { class: "cards" }, cards),
      d.disk && d.data_dir ? h("p", { class: "muted" }, "Data directory: ", h("code", {}, d.data_dir)) : null,
      h("h2", {}, "Front doors, last minutes"),
      h("div", { class: "charts" },
        chart("Requests", "per second", series((p) => p.rps), t0, t1, rate),
        chart("Errors", "per second", series((p) => p.eps), t0, t1, rate),
        chart("Latency, 95th percentile", "upper bound of its histogram bucket", series((p) => p.p95), t0, t1, ms)),
      h("p", { class: "muted" }, "From the server's own counters (the same ones /metrics exports), sampled every ",
        String(m.interval), " s."));
    return true;
  }

  if (!(await refresh())) return;
  const timer = setInterval(async () => {
    if (!ctx.alive() || document.hidden) {
      if (!ctx.alive()) clearInterval(timer);
      return;
    }
    try {
      await refresh(true);
    } catch {
      clearInterval(timer);
    }
  }, REFRESH_MS);
}
