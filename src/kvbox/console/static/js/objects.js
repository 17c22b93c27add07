// The object browser: a bucket's keys as folders (prefixes split at "/") with
// breadcrumbs, one server-side page at a time (ListObjectsV2 with a continuation token, so
// a bucket of a million keys is never loaded whole), a name filter that is a server-side
// prefix, sorting of the page, uploads (files and folders, by button or drag and drop),
// downloads, deleting many at once, new folders, and the bucket "as of" an instant.

import { s3, s3url, s3xml, xall, xchild, xkids, xmlDoc } from "./api.js";
import { bytes, clear, confirm, count, h, heading, prompt, toast, when } from "./dom.js";
import { contentMd5 } from "./md5.js";
import { describe, go, link } from "./routes.js";
import { UploadManager, droppedFiles } from "./upload.js";

const PAGE_SIZES = [50, 100, 500, 1000];
// Time travel reads ListObjectVersions pages of 1,000 until a screenful of keys is known
// (a key is known once a later key, or the end, was seen), at most this many pages per
// screen (100,000 versions: one key with more history than that is shown as of the
// newest of them); "Next" continues after the last key shown.
const AS_OF_MAX_PAGES = 100;

export function folderName(prefix) {
  const parts = prefix.split("/").filter(Boolean);
  return parts.length ? parts[parts.length - 1] : "";
}

function crumbs(bucket, prefix, at) {
  const parts = prefix.split("/").filter(Boolean);
  const items = [h("li", {}, h("a", { href: link("buckets") }, "Buckets")),
    h("li", {}, parts.length ? h("a", { href: link("objects", { bucket, at }) }, bucket) : h("span", { "aria-current": "page" }, bucket))];
  let acc = "";
  parts.forEach((p, i) => {
    acc += `${p}/`;
    items.push(h("li", {}, i === parts.length - 1
      ? h("span", { "aria-current": "page" }, p)
      : h("a", { href: link("objects", { bucket, prefix: acc, at }) }, p)));
  });
  return h("nav", { "aria-label": "Breadcrumbs" }, h("ol", { class: "crumbs" }, items));
}

export function downloadName(key) {
  const name = key.split("/").pop() || "download";
  return `attachment; filename*=UTF-8''${encodeURIComponent(name)}`;
}

export async function render(root, params, ctx) {
  const bucket = params.get("bucket") || "";
  const prefix = params.get("prefix") || "";
  const at = params.get("at") || "";
  const filterText = params.get("filter") || "";
  const pageSize = PAGE_SIZES.includes(Number(params.get("size"))) ? Number(params.get("size")) : 100;

  const state = { tokens: [""], page: 0, rows: [], sort: { by: "name", dir: 1 } };
  const status = h("p", { class: "muted", role: "status" });
  const tableArea = h("div", {});
  const pager = h("div", { class: "pager" });

  // --- toolbar ---------------------------------------------------------------------------
  const filter = h("input", { type: "search", value: filterText, placeholder: "Filter by name (starts with)", "aria-label": "Filter by name: names that start with this text" });
  const filterForm = h("form", { class: "row grow", role: "search" }, filter, h("button", { type: "submit", class: "ghost" }, "Filter"));
  filterForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go("objects", { bucket, prefix, at, filter: filter.value, size: pageSize === 100 ? "" : pageSize });
  });
  const sizeSelect = h("select", { "aria-label": "Keys per page" },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === pageSize }, `${n} per page`)));
  sizeSelect.addEventListener("change", () => go("objects", { bucket, prefix, at, filter: filterText, size: sizeSelect.value }));

  const fileInput = h("input", { type: "file", multiple: true, class: "hidden", "aria-label": "Files to upload" });
  const folderInput = h("input", { type: "file", multiple: true, webkitdirectory: true, class: "hidden", "aria-label": "Folder to upload" });
  const uploads = new UploadManager(() => refreshSoon());
  const uploadEntries = (items) => {
    if (!items.length) return;
    uploads.add(bucket, items.map(({ path, file }) => ({ key: prefix + path, file })));
  };
  fileInput.addEventListener("change", () => {
    uploadEntries(Array.from(fileInput.files).map((file) => ({ path: file.name, file })));
    fileInput.value = "";
  });
  folderInput.addEventListener("change", () => {
    uploadEntries(Array.from(folderInput.files).map((file) => ({ path: file.webkitRelativePath || file.name, file })));
    folderInput.value = "";
  });

  const deleteButton = h("button", { type: "button", class: "danger", disabled: true, onclick: () => removeSelected() }, "Delete selected");
  const toolbar = h("div", { class: "toolbar" },
    at ? null : h("button", { type: "button", onclick: () => fileInput.click() }, "Upload files"),
    at ? null : h("button", { type: "button", class: "ghost", onclick: () => folderInput.click() }, "Upload folder"),
    at ? null : h("button", { type: "button", class: "ghost", onclick: () => newFolder() }, "Create folder"),
    at ? null : deleteButton,
    h("button", { type: "button", class: "ghost", onclick: () => load() }, "Refresh"),
    fileInput, folderInput);

  // --- time travel -----------------------------------------------------------------------
  const atInput = h("input", { type: "datetime-local", step: "1", value: at ? toLocalInput(new Date(at)) : "" });
  const atForm = h("form", { class: "row" },
    h("label", { for: "as-of" }, "As of"), atInput,
    h("button", { type: "submit", class: "ghost" }, "Show"),
    at ? h("a", { class: "button ghost", href: link("objects", { bucket, prefix }) }, "Back to now") : null);
  atInput.id = "as-of";
  atForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!atInput.value) return;
    go("objects", { bucket, prefix, at: new Date(atInput.value).toISOString() });
  });

  const drop = h("div", { class: "dropzone", id: "dropzone" },
    at ? "Time travel shows the bucket as it was; uploads are off." : "Drop files or folders here to upload them to this folder.");
  if (!at) {
    drop.addEventListener("dragover", (ev) => {
      ev.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", async (ev) => {
      ev.preventDefault();
      drop.classList.remove("over");
      uploadEntries(await droppedFiles(ev.dataTransfer));
    });
  }

  root.append(
    heading(prefix ? folderName(prefix) : bucket, " ", at ? h("span", { class: "badge accent" }, `as of ${when(at)}`) : null),
    crumbs(bucket, prefix, at),
    h("div", { class: "row" },
      h("a", { class: "button ghost small", href: link("settings", { bucket }) }, "Bucket settings")),
    toolbar, h("div", { class: "toolbar" }, filterForm, sizeSelect), atForm, drop, uploads.list, status, tableArea, pager);

  let timer = null;
  function refreshSoon() {
    clearTimeout(timer);
    timer = setTimeout(() => { if (ctx.alive()) load(); }, 400);
  }

  // --- listing ---------------------------------------------------------------------------
  async function load() {
    status.textContent = "Loading…";
    try {
      const page = at ? await listAsOf() : await listNow();
      if (!ctx.alive()) return;
      state.rows = page.rows;
      state.next = page.next;
      draw();
      const where = prefix ? `in ${prefix}` : `in ${bucket}`;
      status.textContent = `${count(page.rows.length)} entries ${where}${filterText ? ` starting with “${filterText}”` : ""}, page ${state.page + 1}${page.next ? "" : " (last)"}.`;
    } catch (err) {
      if (!ctx.alive()) return;
      status.textContent = "";
      clear(tableArea, h("div", { class: "alert", role: "alert" }, describe(err)));
    }
  }

  async function listNow() {
    const token = state.tokens[state.page];
    const doc = await s3xml("GET", bucket, null, {
      params: { "list-type": "2", prefix: prefix + filterText, delimiter: "/", "max-keys": pageSize, "continuation-token": token || undefined },
    });
    const top = doc.documentElement;
    const rows = [
      ...xkids(top, "CommonPrefixes").map((p) => ({ folder: true, key: xchild(p, "Prefix") })),
      ...xkids(top, "Contents").map((c) => ({
        key: xchild(c, "Key"), size: Number(xchild(c, "Size")), modified: xchild(c, "LastModified"), etag: xchild(c, "ETag"),
      })),
    ].filter((r) => r.key !== prefix); // the folder's own marker object
    return { rows, next: xchild(top, "IsTruncated") === "true" ? xchild(top, "NextContinuationToken") : null };
  }

  // The bucket as it was at `at`: for each key on this level, its newest version then
  // (none if that was a delete marker). From ListObjectVersions, so it needs
  // s3:ListBucketVersions, as the API would.
  async function listAsOf() {
    const instant = new Date(at).getTime();
    const marker = state.tokens[state.page] || "";
    const keys = new Map();
    const folders = new Set();
    let keyMarker = marker;
    let versionMarker = "";
    let truncated = true;
    let lastKey = "";
    for (let i = 0; i < AS_OF_MAX_PAGES && truncated; i += 1) {
      const doc = await s3xml("GET", bucket, null, {
        params: { versions: true, prefix: prefix + filterText, delimiter: "/", "max-keys": 1000, "key-marker": keyMarker || undefined, "version-id-marker": versionMarker || undefined },
      });
      const top = doc.documentElement;
      for (const p of xkids(top, "CommonPrefixes")) folders.add(xchild(p, "Prefix"));
      for (const v of [...xkids(top, "Version"), ...xkids(top, "DeleteMarker")]) {
        const key = xchild(v, "Key");
        const t = new Date(xchild(v, "LastModified")).getTime();
        lastKey = key > lastKey ? key : lastKey;
        if (t > instant) continue;
        const seen = keys.get(key);
        if (!seen || t > seen.t || (t === seen.t && v.localName === "DeleteMarker")) {
          keys.set(key, {
            t, deleted: v.localName === "DeleteMarker", key, version: xchild(v, "VersionId"),
            size: Number(xchild(v, "Size") || 0), modified: xchild(v, "LastModified"),
          });
        }
      }
      truncated = xchild(top, "IsTruncated") === "true";
      keyMarker = xchild(top, "NextKeyMarker");
      versionMarker = xchild(top, "NextVersionIdMarker");
      // enough once a screenful is known beyond the last key, whose versions may go on
      const known = keys.size - (keys.has(lastKey) ? 1 : 0);
      if (known + folders.size >= pageSize) break;
    }
    let next = null;
    if (truncated) {
      // The last key may have more versions on the next page: leave it for "Next".
      keys.delete(lastKey);
      next = [...keys.keys()].sort().pop() || marker;
      if (next === marker) next = lastKey; // one key with more than a screenful of versions
    }
    const rows = [
      ...[...folders].sort().map((key) => ({ folder: true, key })),
      ...[...keys.values()].filter((k) => !k.deleted && k.key !== prefix).sort((a, b) => (a.key < b.key ? -1 : 1)),
    ];
    return { rows, next };
  }

  function sorted(rows) {
    const { by, dir } = state.sort;
    const val = (r) => (by === "size" ? (r.size ?? -1) : by === "modified" ? (r.modified || "") : r.key);
    return [...rows].sort((a, b) => {
      if (a.folder !== b.folder) return a.folder ? -1 : 1;
      const x = val(a);
      const y = val(b);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
  }

  function sortHeader(label, by, cls = "") {
    const active = state.sort.by === by;
    const th = h("th", { scope: "col", class: cls, "aria-sort": active ? (state.sort.dir > 0 ? "ascending" : "descending") : "none" },
      h("button", { type: "button", class: "sort", onclick: () => {
        state.sort = { by, dir: active ? -state.sort.dir : 1 };
        draw();
        tableArea.querySelector(`th[aria-sort="${state.sort.dir > 0 ? "ascending" : "descending"}"] button`).focus();
      } }, label, active ? (state.sort.dir > 0 ? " ▲" : " ▼") : ""));
    return th;
  }

  function draw() {
    const rows = sorted(state.rows);
    if (!rows.length) {
      clear(tableArea, h("p", { class: "empty" }, filterText ? "Nothing starts with that here." : at ? "Nothing here at that time." : "This folder is empty. Upload files or drop them above."));
    } else {
      const all = h("input", { type: "checkbox", "aria-label": "Select all on this page", onchange: () => {
        for (const box of tableArea.querySelectorAll("tbody input[type=checkbox]")) box.checked = all.checked;
        selectionChanged();
      } });
      clear(tableArea, h("div", { class: "table-wrap" }, h("table", {},
        h("caption", { class: "hidden" }, "Objects and folders; the sort applies to this page"),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, at ? "" : all),
          sortHeader("Name", "name"), sortHeader("Size", "size", "right"), sortHeader("Last modified", "modified", "hide-narrow"),
          h("th", { scope: "col" }, h("span", { class: "hidden" }, "Actions")))),
        h("tbody", {}, rows.map(row)))));
    }
    clear(pager,
      h("button", { type: "button", class: "ghost", disabled: state.page === 0, onclick: () => { state.page -= 1; load(); } }, "Previous page"),
      h("span", { class: "muted" }, `Page ${state.page + 1}`),
      h("button", { type: "button", class: "ghost", disabled: !state.next, onclick: () => {
        state.tokens[state.page + 1] = state.next;
        state.page += 1;
        load();
      } }, "Next page"));
    selectionChanged();
  }

  function row(r) {
    const name = r.key.slice(prefix.length);
    const box = at ? null : h("input", { type: "checkbox", "aria-label": `Select ${name}`, dataset: { key: r.key, folder: r.folder ? "1" : "" }, onchange: selectionChanged });
    if (r.folder) {
      return h("tr", {}, h("td", {}, box),
        h("td", { class: "name" }, h("a", { href: link("objects", { bucket, prefix: r.key, at }) }, folderIcon(), name)),
        h("td", { class: "right muted" }, "folder"), h("td", { class: "hide-narrow" }), h("td", {}));
    }
    const params = { bucket, key: r.key };
    if (at) {
      params.version = r.version;
      params.at = at; // so the way back leads to the same instant
    }
    const dl = { "response-content-disposition": downloadName(r.key) };
    if (at) dl.versionId = r.version;
    return h("tr", {}, h("td", {}, box),
      h("td", { class: "name" }, h("a", { href: link("object", params) }, name)),
      h("td", { class: "right nowrap" }, bytes(r.size)),
      h("td", { class: "hide-narrow nowrap" }, when(r.modified)),
      h("td", { class: "actions" }, h("a", { class: "button ghost small", href: s3url(bucket, r.key, dl), download: name, "aria-label": `Download ${name}` }, "Download")));
  }

  function selected() {
    return Array.from(tableArea.querySelectorAll("tbody input[type=checkbox]:checked"))
      .map((b) => ({ key: b.dataset.key, folder: Boolean(b.dataset.folder) }));
  }

  function selectionChanged() {
    const n = selected().length;
    deleteButton.disabled = n === 0;
    deleteButton.textContent = n ? `Delete selected (${n})` : "Delete selected";
  }

  async function newFolder() {
    const name = await prompt("Create folder", "Folder name", "Created as an empty object whose key ends in “/”, as S3 consoles do.");
    if (!name) return;
    if (name.includes("/")) {
      toast("A folder name cannot contain “/”", true);
      return;
    }
    try {
      await s3("PUT", bucket, `${prefix}${name}/`, { body: "" });
      toast(`Folder ${name} created`);
      await load();
    } catch (err) {
      toast(describe(err), true);
    }
  }

  async function removeSelected() {
    const items = selected();
    const folders = items.filter((i) => i.folder).length;
    const msg = `${items.length} selected${folders ? `, of them ${folders} folder(s) with everything in them` : ""}. In a versioned bucket this adds delete markers; old versions stay.`;
    if (!(await confirm(`Delete ${items.length} item(s)?`, msg))) return;
    let keys = items.filter((i) => !i.folder).map((i) => i.key);
    for (const f of items.filter((i) => i.folder)) keys = keys.concat(await allKeys(f.key));
    let done = 0;
    let failed = [];
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const body = xmlDoc("Delete", [["Quiet", "true"], ...batch.map((k) => ["Object", [["Key", k]]])]);
      const result = await s3xml("POST", bucket, null, { params: { delete: true }, headers: { "Content-Type": "application/xml", "Content-MD5": contentMd5(body) }, body });
      const errors = xall(result, "Error");
      failed = failed.concat(errors.map((e) => `${xchild(e, "Key")}: ${xchild(e, "Code")}`));
      done += batch.length - errors.length;
      status.textContent = `Deleted ${count(done)} of ${count(keys.length)}…`;
    }
    toast(failed.length ? `Deleted ${done}; refused: ${failed.slice(0, 3).join(", ")}${failed.length > 3 ? "…" : ""}` : `Deleted ${done} object(s)`, failed.length > 0);
    await load();
  }

  async function allKeys(folder) {
    const out = [];
    let token = "";
    for (;;) {
      const doc = await s3xml("GET", bucket, null, { params: { "list-type": "2", prefix: folder, "max-keys": 1000, "continuation-token": token || undefined } });
      for (const c of xall(doc, "Contents")) out.push(xchild(c, "Key"));
      if (xchild(doc.documentElement, "IsTruncated") !== "true") return out;
      token = xchild(doc.documentElement, "NextContinuationToken");
    }
  }

  await load();
}

// A folder glyph drawn in SVG (no icon font, no emoji font needed).
function folderIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M1 3.5A1.5 1.5 0 0 1 2.5 2h3.6l1.5 1.5h5.9A1.5 1.5 0 0 1 15 5v7.5a1.5 1.5 0 0 1-1.5 1.5h-11A1.5 1.5 0 0 1 1 12.5z");
  svg.append(path);
  return svg;
}

function toLocalInput(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
