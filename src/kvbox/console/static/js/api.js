// The console's two ways to the server, both relative to the page (so a reverse proxy's
// sub-path needs no configuration here):
//   api/<endpoint>   the console's own JSON endpoints (session, stats, presign, ...)
//   api/s3/<path>    the S3 API itself, signed by the server as the signed-in user
// The session cookie is HttpOnly; the CSRF token lives only in this module's memory and
// goes with every request that changes anything.

import { contentMd5 } from "./md5.js";

export const session = { info: null };
const listeners = new Set();

export function onSignedOut(fn) {
  listeners.add(fn);
}

function signedOut(message) {
  session.info = null;
  for (const fn of listeners) fn(message);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || "";
  }
}

export function query(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === false) continue;
    const values = Array.isArray(v) ? v : [v];
    for (const one of values) {
      parts.push(v === true || one === "" ? encodeURIComponent(k) : `${encodeURIComponent(k)}=${encodeURIComponent(one)}`);
    }
  }
  return parts.join("&");
}

export async function request(method, path, { params, headers, body, signal } = {}) {
  const hdrs = new Headers(headers || {});
  if (method !== "GET" && method !== "HEAD" && session.info) hdrs.set("X-Kvbox-CSRF", session.info.csrf);
  const q = query(params);
  let resp;
  try {
    resp = await fetch(`api/${path}${q ? `?${q}` : ""}`, {
      method, headers: hdrs, body, signal, credentials: "same-origin", cache: "no-store",
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "NetworkError", "The server cannot be reached. Check the connection and try again.");
  }
  if (resp.status === 401 && path !== "session") {
    const detail = await errorOf(resp);
    signedOut(detail.message);
    throw new ApiError(401, detail.code, detail.message);
  }
  return resp;
}

// { code, message } of a failed response: JSON from the console, XML from S3.
export async function errorOf(resp) {
  const text = await resp.text().catch(() => "");
  const type = resp.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      const doc = JSON.parse(text);
      return { code: doc.error || "", message: doc.message || doc.error || text };
    } catch { /* fall through */ }
  }
  if (text.startsWith("<")) {
    const doc = parseXml(text);
    const code = xtext(doc, "Code");
    return { code, message: xtext(doc, "Message") || code };
  }
  return { code: String(resp.status), message: text || `${resp.status} ${resp.statusText}` };
}

export async function json(method, path, payload, params, headers) {
  const init = { params, headers: { ...(headers || {}) } };
  if (payload !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(payload);
  }
  const resp = await request(method, path, init);
  if (!resp.ok) {
    const e = await errorOf(resp);
    throw new ApiError(resp.status, e.code, e.message);
  }
  return resp.json();
}

// --- S3 --------------------------------------------------------------------------------

export function encodeKey(key) {
  return key.split("/").map(encodeURIComponent).join("/");
}

export function s3path(bucket, key) {
  let p = "s3/";
  if (bucket) p += encodeURIComponent(bucket);
  if (key !== undefined && key !== null) p += `/${encodeKey(key)}`;
  return p;
}

// A URL the page can put in <img src>, <a href> (same origin: the cookie goes along).
export function s3url(bucket, key, params) {
  const q = query(params);
  return `api/${s3path(bucket, key)}${q ? `?${q}` : ""}`;
}

// One S3 call; resolves with the Response when it succeeded, throws ApiError (with S3's
// own code and message) when it did not. A text body goes with its Content-MD5, which S3
// demands of configurations (object lock, lifecycle, CORS...), of DeleteObjects, and of
// any write into a bucket whose objects are locked by default.
export async function s3(method, bucket, key, { params, headers, body, signal } = {}) {
  const hdrs = new Headers(headers || {});
  if (typeof body === "string" && !hdrs.has("Content-MD5")) hdrs.set("Content-MD5", contentMd5(body));
  const resp = await request(method, s3path(bucket, key), { params, headers: hdrs, body, signal });
  if (!resp.ok) {
    if (method === "HEAD") throw new ApiError(resp.status, resp.status === 404 ? "NotFound" : String(resp.status), resp.statusText);
    const e = await errorOf(resp);
    throw new ApiError(resp.status, e.code, e.message);
  }
  return resp;
}

// A bucket configuration's document, or null when the bucket has none (S3 answers 404
// NoSuch...Configuration).
export async function getConfig(bucket, param) {
  try {
    return await s3xml("GET", bucket, null, { params: { [param]: true } });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404 && err.code !== "NoSuchBucket") return null;
    throw err;
  }
}

export async function s3xml(method, bucket, key, init) {
  const resp = await s3(method, bucket, key, init);
  return parseXml(await resp.text());
}

// --- XML -------------------------------------------------------------------------------

export function parseXml(text) {
  return new DOMParser().parseFromString(text, "application/xml");
}

export function xall(node, name) {
  return Array.from(node.getElementsByTagNameNS("*", name));
}

// Direct children named `name` (S3 nests same-named elements, e.g. Prefix in CommonPrefixes).
export function xkids(node, name) {
  return Array.from(node.children).filter((c) => c.localName === name);
}

export function xtext(node, name) {
  const el = node.getElementsByTagNameNS("*", name)[0];
  return el ? el.textContent : "";
}

export function xchild(node, name) {
  const el = xkids(node, name)[0];
  return el ? el.textContent : "";
}

export function escapeXml(text) {
  return String(text).replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]);
}

// xml("Tagging", [["TagSet", [["Tag", [["Key", "a"], ["Value", "b"]]]]]]) -> escaped XML text.
export function xml(tag, content) {
  const inner = Array.isArray(content)
    ? content.map(([t, c]) => xml(t, c)).join("")
    : escapeXml(content);
  return `<${tag}>${inner}</${tag}>`;
}

export function xmlDoc(tag, content) {
  const body = xml(tag, content);
  return `<?xml version="1.0" encoding="UTF-8"?>${body.replace(`<${tag}>`, `<${tag} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`)}`;
}

// --- admin -----------------------------------------------------------------------------

// One `kvbox admin` command through the S3 door's /_kvbox/admin (root only, as in the CLI).
export async function admin(noun, verb, target = "") {
  const resp = await request("POST", "s3/_kvbox/admin", {
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ noun, verb, target }),
  });
  if (!resp.ok) {
    const e = await errorOf(resp);
    throw new ApiError(resp.status, e.code, e.message);
  }
  const doc = await resp.json();
  if (doc.status !== 0) throw new ApiError(400, "AdminRefused", doc.lines.join(" "));
  return doc.lines;
}
