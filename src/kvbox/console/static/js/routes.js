// Routes live in the URL fragment: #/<screen>?<params>. Nothing in a fragment is ever
// sent to a server, and fragment routes work under any sub-path a proxy adds.

import { ApiError } from "./api.js";

export function route() {
  const raw = location.hash.replace(/^#\/?/, "");
  const at = raw.indexOf("?");
  const name = at < 0 ? raw : raw.slice(0, at);
  return { name, params: new URLSearchParams(at < 0 ? "" : raw.slice(at + 1)) };
}

export function link(name, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return `#/${name}${s ? `?${s}` : ""}`;
}

export function go(name, params) {
  const target = link(name, params);
  if (location.hash === target) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = target;
}

// One line for a person: S3's code and message, or the console's.
export function describe(err) {
  if (err instanceof ApiError) {
    return err.code && err.code !== err.message && !/^\d+$/.test(err.code)
      ? `${err.code}: ${err.message}` : err.message;
  }
  return String(err && err.message ? err.message : err);
}
