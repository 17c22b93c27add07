// Small DOM helpers. Text always goes in as text nodes (never innerHTML), so an object
// key or a server message can never become markup in the console's own origin.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "style") {
      // Never a style attribute: the page's CSP (style-src 'self') refuses inline styles.
      throw new Error("use a class, not an inline style");
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name in el && typeof value !== "string") {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${UNITS[i]}`;
}

export function count(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

export function when(value) {
  if (!value) return "–";
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function duration(seconds) {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${hh} h`;
  if (hh) return `${hh} h ${mm} min`;
  if (mm) return `${mm} min ${s % 60} s`;
  return `${s} s`;
}

// Status messages: a polite live region, so screen readers hear them too.
export function toast(message, bad = false) {
  const region = document.getElementById("status");
  const item = h("div", { class: bad ? "toast bad" : "toast" }, message);
  region.append(item);
  setTimeout(() => item.remove(), bad ? 8000 : 4000);
}

export function field(labelText, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  const parts = [h("label", { for: id }, labelText)];
  if (hint) {
    const hintId = `${id}-hint`;
    input.setAttribute("aria-describedby", hintId);
    parts.push(h("span", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, parts, input);
}

export function check(labelText, input, hint) {
  return h("label", { class: "check" }, input,
    h("span", {}, labelText, hint ? h("span", { class: "muted" }, ` — ${hint}`) : null));
}

// A modal dialog (native <dialog>: focus moves in, Escape closes, focus returns).
// Resolves with the value of the button pressed (or "" on Escape).
export function dialog(title, body, buttons) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const form = h("form", { method: "dialog" }, h("h2", {}, title), body,
      h("div", { class: "row" }, buttons.map(([label, value, cls]) =>
        h("button", { value, class: cls || (value ? "" : "ghost") }, label))));
    const dlg = h("dialog", { "aria-label": title }, form);
    document.body.append(dlg);
    dlg.addEventListener("close", () => {
      resolve(dlg.returnValue);
      dlg.remove();
      if (opener && opener.focus) opener.focus();
    });
    dlg.showModal();
  });
}

export async function confirm(title, message, action = "Delete", cls = "danger") {
  const answer = await dialog(title, h("p", {}, message), [["Cancel", ""], [action, "yes", cls]]);
  return answer === "yes";
}

export async function prompt(title, labelText, hint = "", initial = "") {
  const input = h("input", { type: "text", value: initial, autocomplete: "off" });
  const body = field(labelText, input, hint);
  const p = dialog(title, body, [["Cancel", ""], ["OK", "ok"]]);
  input.focus();
  const answer = await p;
  return answer === "ok" ? input.value : null;
}

export async function copyText(text, what = "Copied") {
  try {
    await navigator.clipboard.writeText(text);
    toast(`${what} to the clipboard`);
  } catch {
    toast("Copy failed: select the text and copy it by hand", true);
  }
}

// The page's heading; focus moves to it after a route change, so keyboard and screen
// reader users start at the top of the new screen.
export function heading(text, ...extra) {
  return h("h1", { tabindex: "-1", id: "page-title" }, text, ...extra);
}
