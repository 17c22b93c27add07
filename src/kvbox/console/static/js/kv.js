// The key-value view: the GW-KV keyspace seen as what it is -- the objects of the `kv`
// bucket. SET, GET and DELETE here are S3 PutObject, GetObject and DeleteObject on that
// bucket, as the signed-in user (so a user without rights on `kv` is refused, exactly as
// through S3); a value set here is what a GW-KV GET returns, and the reverse.

import { ApiError, s3, s3url, s3xml, session, xchild, xkids } from "./api.js";
import { bytes, clear, confirm, count, field, h, heading, toast, when } from "./dom.js";
import { downloadName } from "./objects.js";
import { describe, go, link } from "./routes.js";

// GW-KV's rules (docs/protocol.md §2): keys of 1-64 letters and digits; a text value is
// at most 1,024 bytes of ASCII 0x01-0x7F without CR or LF (anything else needs BSET/BGET).
const KEY_RE = /^[A-Za-z0-9]{1,64}$/;
const TEXT_MAX = 1024;
const PAGE = 100;

function isGwkvText(bytesArr) {
  if (bytesArr.length > TEXT_MAX) return false;
  for (const b of bytesArr) if (b === 0 || b > 0x7f || b === 0x0a || b === 0x0d) return false;
  return true;
}

export async function render(root, params, ctx) {
  const bucket = session.info.kv_bucket;
  const filter = params.get("filter") || "";
  const shown = params.get("key") || "";
  root.append(heading("Key-value"),
    h("p", {}, "GW-KV keys are the objects of the bucket ", h("a", { href: link("objects", { bucket }) }, h("code", {}, bucket)),
      ": one keyspace, two protocols. SET, GET and DELETE here are S3 requests on that bucket, made as you."));

  // --- SET / GET / DELETE -----------------------------------------------------------------
  const key = h("input", { type: "text", autocomplete: "off", spellcheck: "false", autocapitalize: "off", value: shown, pattern: "[A-Za-z0-9]{1,64}" });
  const value = h("textarea", { rows: 3, spellcheck: "false" });
  const result = h("div", { id: "kv-result", "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-label": "SET, GET or DELETE a key", novalidate: true },
    field("Key", key, "1–64 letters and digits, as GW-KV accepts"),
    field("Value (for SET)", value, "Text up to 1,024 ASCII characters without line breaks is a GW-KV text value; anything else is stored too but needs BGET to read"),
    h("div", { class: "row" },
      h("button", { type: "submit", value: "set" }, "SET"),
      h("button", { type: "button", class: "ghost", onclick: () => get(key.value.trim()) }, "GET"),
      h("button", { type: "button", class: "ghost danger", onclick: () => del(key.value.trim()) }, "DELETE")),
    result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    await set(key.value.trim(), value.value);
  });

  const filterInput = h("input", { type: "search", value: filter, "aria-label": "Keys starting with", placeholder: "Keys starting with" });
  const filterForm = h("form", { class: "toolbar", role: "search" }, filterInput, h("button", { type: "submit", class: "ghost" }, "Filter"));
  filterForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go("kv", { filter: filterInput.value });
  });
  const listArea = h("div", {});
  const pager = h("div", { class: "pager" });
  const versionsArea = h("div", {});
  root.append(form, h("h2", {}, "Keys"), filterForm, listArea, pager, versionsArea);

  function validKey(k) {
    if (KEY_RE.test(k)) return true;
    clear(result, h("p", { class: "alert", role: "alert" }, "ERR BADKEY: a GW-KV key is 1–64 letters and digits."));
    key.focus();
    return false;
  }

  async function set(k, v) {
    if (!validKey(k)) return;
    try {
      const resp = await s3("PUT", bucket, k, { headers: { "Content-Type": "application/octet-stream" }, body: v });
      const vid = resp.headers.get("x-amz-version-id");
      clear(result, h("p", { class: "ok" }, `OK${vid && vid !== "null" ? ` ${vid}` : ""}`, h("span", { class: "muted" }, ` — ${k} set`)));
      await load();
    } catch (err) {
      clear(result, h("p", { class: "alert", role: "alert" }, describe(err)));
    }
  }

  async function get(k) {
    if (!validKey(k)) return;
    try {
      const resp = await s3("GET", bucket, k, { headers: { Range: `bytes=0-${TEXT_MAX}` } });
      const total = Number((resp.headers.get("content-range") || "").split("/")[1] || resp.headers.get("content-length") || 0);
      const data = new Uint8Array(await resp.arrayBuffer());
      if (total <= TEXT_MAX && isGwkvText(data)) {
        clear(result, h("p", {}, h("code", {}, "VALUE "), h("code", { id: "kv-value" }, new TextDecoder().decode(data))));
      } else {
        clear(result, h("p", {}, `A binary or large value of ${bytes(total)}: GW-KV GET answers ERR NOTTEXT; BGET reads it. `,
          h("a", { href: s3url(bucket, k, { "response-content-disposition": downloadName(k) }), download: k }, "Download it")));
      }
      showVersions(k);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) clear(result, h("p", {}, h("code", { id: "kv-value" }, "NOTFOUND")));
      else clear(result, h("p", { class: "alert", role: "alert" }, describe(err)));
    }
  }

  async function del(k) {
    if (!validKey(k)) return;
    if (!(await confirm(`DELETE ${k}?`, "The key's value is deleted (in a versioned bucket, a delete marker is added)."))) return;
    try {
      await s3("DELETE", bucket, k);
      clear(result, h("p", { class: "ok" }, `OK — ${k} deleted`));
      await load();
    } catch (err) {
      clear(result, h("p", { class: "alert", role: "alert" }, describe(err)));
    }
  }

  // --- the keys, a page at a time ------------------------------------------------------------
  const tokens = [""];
  let page = 0;
  async function load() {
    let doc;
    try {
      doc = await s3xml("GET", bucket, null, { params: { "list-type": "2", prefix: filter, "max-keys": PAGE, "continuation-token": tokens[page] || undefined } });
    } catch (err) {
      clear(listArea, h("div", { class: "alert", role: "alert" }, describe(err)));
      return;
    }
    if (!ctx.alive()) return;
    const top = doc.documentElement;
    const items = xkids(top, "Contents");
    if (!items.length) {
      clear(listArea, h("p", { class: "empty" }, filter ? "No key starts with that." : "No keys yet. SET one above, or with GW-KV."));
    } else {
      clear(listArea, h("div", { class: "table-wrap" }, h("table", {},
        h("caption", { class: "hidden" }, "Keys"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"), h("th", { scope: "col", class: "right" }, "Size"),
          h("th", { scope: "col", class: "hide-narrow" }, "Last modified"), h("th", { scope: "col" }, "Actions"))),
        h("tbody", {}, items.map((c) => {
          const k = xchild(c, "Key");
          const gw = KEY_RE.test(k);
          return h("tr", { dataset: { key: k } },
            h("td", { class: "name mono" }, k, " ", gw ? null : h("span", { class: "badge", title: "Not a GW-KV key name: reachable through S3 only" }, "S3 only")),
            h("td", { class: "right nowrap" }, bytes(Number(xchild(c, "Size")))),
            h("td", { class: "hide-narrow nowrap" }, when(xchild(c, "LastModified"))),
            h("td", { class: "actions" },
              gw ? h("button", { type: "button", class: "ghost small", onclick: () => { key.value = k; get(k); } }, "GET") : null, " ",
              h("button", { type: "button", class: "ghost small", onclick: () => showVersions(k) }, "Versions"), " ",
              h("a", { class: "button ghost small", href: link("object", { bucket, key: k }) }, "Object")));
        })))));
    }
    const next = xchild(top, "IsTruncated") === "true" ? xchild(top, "NextContinuationToken") : "";
    clear(pager,
      h("button", { type: "button", class: "ghost", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous page"),
      h("span", { class: "muted" }, `Page ${page + 1}, ${count(items.length)} keys`),
      h("button", { type: "button", class: "ghost", disabled: !next, onclick: () => { tokens[page + 1] = next; page += 1; load(); } }, "Next page"));
  }

  async function showVersions(k) {
    try {
      const doc = await s3xml("GET", bucket, null, { params: { versions: true, prefix: k, "max-keys": 100 } });
      const mine = Array.from(doc.documentElement.children)
        .filter((v) => (v.localName === "Version" || v.localName === "DeleteMarker") && xchild(v, "Key") === k);
      clear(versionsArea, h("section", { class: "card", "aria-labelledby": "kv-versions-title" },
        h("h2", { id: "kv-versions-title" }, `Versions of ${k}`),
        mine.length ? h("ul", {}, mine.map((v) => h("li", {},
          h("code", {}, xchild(v, "VersionId")), " ", when(xchild(v, "LastModified")), " ",
          v.localName === "DeleteMarker" ? h("span", { class: "badge danger" }, "deleted") : bytes(Number(xchild(v, "Size"))),
          xchild(v, "IsLatest") === "true" ? h("span", { class: "badge accent" }, "latest") : null)))
          : h("p", { class: "muted" }, "No versions."),
        h("p", { class: "muted" }, "Every version is kept only when versioning is on for the bucket (kvbox serve --kv-versioning on, or the bucket's settings). ",
          h("a", { href: link("object", { bucket, key: k }) }, "Open the object"), " to view, restore or delete a version.")));
    } catch (err) {
      clear(versionsArea, h("div", { class: "alert", role: "alert" }, describe(err)));
    }
  }

  await load();
  if (shown) await get(shown);
}
