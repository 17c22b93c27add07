// One object (or one of its versions): preview, download, presigned and public links,
// metadata and tags (seen and edited), and its version history -- view or download any
// version, restore one as the newest, delete one for good.

import { ApiError, json, s3, s3url, s3xml, xall, xchild, xmlDoc } from "./api.js";
import { bytes, clear, confirm, copyText, field, h, heading, toast, when } from "./dom.js";
import { aclSection } from "./acl.js";
import { objectLockSection } from "./lock.js";
import { downloadName, folderName } from "./objects.js";
import { preview } from "./preview.js";
import { describe, go, link } from "./routes.js";

const VERSIONS_PAGE = 50;
const EXPIRIES = [[900, "15 minutes"], [3600, "1 hour"], [86400, "1 day"], [604800, "7 days (the most S3 allows)"]];
// Response headers S3 keeps from the PUT (CopyObject with REPLACE sets them anew).
const SYSTEM = [
  ["Content-Type", "content-type"],
  ["Cache-Control", "cache-control"],
  ["Content-Disposition", "content-disposition"],
  ["Content-Encoding", "content-encoding"],
  ["Content-Language", "content-language"],
];

function copySource(bucket, key, versionId) {
  const src = `/${encodeURIComponent(bucket)}/${key.split("/").map(encodeURIComponent).join("/")}`;
  return versionId ? `${src}?versionId=${encodeURIComponent(versionId)}` : src;
}

export async function render(root, params, ctx) {
  const bucket = params.get("bucket") || "";
  const key = params.get("key") || "";
  const versionId = params.get("version") || "";
  const at = params.get("at") || ""; // opened from the bucket as of an instant
  const q = versionId ? { versionId } : undefined;
  const folder = key.includes("/") ? key.slice(0, key.lastIndexOf("/") + 1) : "";
  const name = key.split("/").pop() || key;

  root.append(
    heading(name, " ", versionId ? h("span", { class: "badge accent" }, "a version") : null),
    h("nav", { "aria-label": "Breadcrumbs" }, h("ol", { class: "crumbs" },
      h("li", {}, h("a", { href: link("buckets") }, "Buckets")),
      h("li", {}, h("a", { href: link("objects", { bucket, at }) }, bucket)),
      folder ? h("li", {}, h("a", { href: link("objects", { bucket, prefix: folder, at }) }, folderName(folder))) : null,
      h("li", {}, h("span", { "aria-current": "page" }, name)))));

  let head;
  try {
    head = await s3("HEAD", bucket, key, { params: q });
  } catch (err) {
    const why = err instanceof ApiError && err.status === 404
      ? (versionId ? "No such version." : "No such object (it may have been deleted: see its versions below).")
      : err instanceof ApiError && err.status === 403 ? "You may not read this object." : describe(err);
    root.append(h("div", { class: "alert", role: "alert" }, why));
    if (err instanceof ApiError && err.status === 404 && !versionId) root.append(await versionsSection(bucket, key, "", ctx));
    return;
  }
  if (!ctx.alive()) return;
  // The console relays the object's own Cache-Control under another name (the browser
  // must not cache private objects whatever their metadata says).
  const hdr = (n) => head.headers.get(n === "cache-control" ? "x-kvbox-object-cache-control" : n) || "";
  const size = Number(hdr("content-length") || 0);
  const contentType = hdr("content-type");
  const shownVersion = hdr("x-amz-version-id");

  const userMeta = [];
  head.headers.forEach((value, hname) => {
    if (hname.startsWith("x-amz-meta-")) userMeta.push([hname.slice("x-amz-meta-".length), value]);
  });

  // --- actions ---------------------------------------------------------------------------
  const dl = { ...(q || {}), "response-content-disposition": downloadName(key) };
  const linkArea = h("div", {});
  const actions = h("div", { class: "toolbar" },
    h("a", { class: "button", href: s3url(bucket, key, dl), download: name }, "Download"),
    h("button", { type: "button", class: "ghost", onclick: () => presignForm() }, "Share a link"),
    h("button", { type: "button", class: "ghost danger", onclick: () => removeObject() }, versionId ? "Delete this version" : "Delete"));

  root.append(actions, linkArea);

  // --- details ---------------------------------------------------------------------------
  const details = h("dl", { class: "kv" },
    h("dt", {}, "Bucket"), h("dd", {}, bucket),
    h("dt", {}, "Key"), h("dd", { class: "mono" }, key),
    h("dt", {}, "Size"), h("dd", {}, `${bytes(size)} (${size.toLocaleString("en-US")} bytes)`),
    h("dt", {}, "Type"), h("dd", {}, contentType || "–"),
    h("dt", {}, "Last modified"), h("dd", {}, when(hdr("last-modified"))),
    h("dt", {}, "ETag"), h("dd", { class: "mono" }, hdr("etag")),
    h("dt", {}, "Version"), h("dd", { class: "mono" }, shownVersion || "– (versioning has never been on)"));
  const previewSlot = h("div", {}, h("p", { class: "muted" }, "Loading preview…"));
  const publicSlot = h("div", {});
  root.append(h("div", { class: "split" },
    h("section", { "aria-labelledby": "preview-title" }, h("h2", { id: "preview-title" }, "Preview"), previewSlot),
    h("section", { "aria-labelledby": "details-title" }, h("h2", { id: "details-title" }, "Details"), details, publicSlot)));
  preview(bucket, key, versionId, contentType, size)
    .then((el) => clear(previewSlot, el))
    .catch((err) => clear(previewSlot, h("p", { class: "alert" }, describe(err))));

  // public URL: asked of the S3 door anonymously (see the console's /api/public)
  json("GET", "public", undefined, { bucket, key, version_id: versionId || undefined }).then((p) => {
    if (!ctx.alive()) return;
    if (p.public) {
      clear(publicSlot, h("div", { class: "notice" },
        h("p", {}, "This object is public: anyone can read it at"),
        h("div", { class: "secret" }, h("code", { id: "public-url" }, p.url),
          h("button", { type: "button", class: "small", onclick: () => copyText(p.url, "Public URL copied") }, "Copy public URL"))));
    } else {
      clear(publicSlot, h("p", { class: "muted" }, "Not public: anonymous requests for it are refused."));
    }
  }).catch(() => clear(publicSlot));

  root.append(await versionsSection(bucket, key, shownVersion, ctx));
  const locked = await objectLockSection(bucket, key, versionId);
  if (locked) root.append(locked);
  if (!versionId) root.append(metadataSection());
  root.append(await tagsSection(), await aclSection(bucket, key, versionId));

  // --- presigned links --------------------------------------------------------------------
  function presignForm() {
    const sel = h("select", {}, EXPIRIES.map(([s, label]) => h("option", { value: s, selected: s === 3600 }, label)));
    const out = h("div", {});
    const form = h("form", { class: "card", "aria-label": "Share a link" },
      h("h2", {}, "Share a link"),
      h("p", { class: "muted" }, "A presigned URL lets anyone who has it download this object until it expires, with your permissions. It is signed with your key: disabling the key ends it."),
      field("Valid for", sel), h("button", { type: "submit" }, "Make link"), out);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const r = await json("POST", "presign", { bucket, key, version_id: versionId || undefined, expires: Number(sel.value) });
        const input = h("input", { type: "text", readonly: true, value: r.url, id: "presigned-url", "aria-label": "Presigned URL", class: "grow" });
        clear(out, h("div", { class: "row" }, input,
          h("button", { type: "button", onclick: () => copyText(r.url, "Link copied") }, "Copy link")),
        h("p", { class: "muted" }, `Expires ${when(Date.now() + r.expires * 1000)}.`));
        input.select();
      } catch (err) {
        clear(out, h("div", { class: "alert", role: "alert" }, describe(err)));
      }
    });
    clear(linkArea, form);
    sel.focus();
  }

  async function removeObject() {
    const msg = versionId
      ? "This version is deleted for good."
      : "In a versioned bucket a delete marker is added and the old versions stay; otherwise the object is gone.";
    if (!(await confirm(`Delete ${name}?`, msg))) return;
    try {
      await s3("DELETE", bucket, key, { params: q });
      toast(`${name} deleted`);
      go("objects", { bucket, prefix: folder });
    } catch (err) {
      toast(describe(err), true);
    }
  }

  // --- metadata (CopyObject onto itself with REPLACE, as S3 consoles do) -------------------
  function metadataSection() {
    const inputs = SYSTEM.map(([label, hname]) => [hname, h("input", { type: "text", value: hdr(hname) })]);
    const rows = h("div", {});
    const addRow = (k = "", v = "") => {
      const kin = h("input", { type: "text", value: k, "aria-label": "Metadata name", placeholder: "name" });
      const vin = h("input", { type: "text", value: v, "aria-label": "Metadata value", placeholder: "value" });
      const r = h("div", { class: "row meta-row" }, h("span", { class: "muted" }, "x-amz-meta-"), kin, vin,
        h("button", { type: "button", class: "ghost small", onclick: () => r.remove(), "aria-label": "Remove this metadata" }, "Remove"));
      rows.append(r);
    };
    for (const [k, v] of userMeta) addRow(k, v);
    const form = h("form", { class: "card", "aria-labelledby": "meta-title" },
      h("h2", { id: "meta-title" }, "Metadata"),
      inputs.map(([hname, input]) => field(SYSTEM.find((s) => s[1] === hname)[0], input)),
      h("fieldset", {}, h("legend", {}, "User metadata"), rows,
        h("button", { type: "button", class: "ghost small", onclick: () => addRow() }, "Add metadata")),
      h("p", { class: "muted" }, "Saving writes the object again with the new metadata (S3 CopyObject with REPLACE): in a versioned bucket that is a new version. Tags are kept."),
      h("button", { type: "submit" }, "Save metadata"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const headers = { "x-amz-copy-source": copySource(bucket, key, shownVersion && shownVersion !== "null" ? shownVersion : ""), "x-amz-metadata-directive": "REPLACE" };
      for (const [hname, input] of inputs) if (input.value.trim()) headers[hname] = input.value.trim();
      for (const r of rows.querySelectorAll(".meta-row")) {
        const [kin, vin] = r.querySelectorAll("input");
        if (kin.value.trim()) headers[`x-amz-meta-${kin.value.trim().toLowerCase()}`] = vin.value;
      }
      try {
        await s3("PUT", bucket, key, { headers });
        toast("Metadata saved");
        go("object", { bucket, key });
      } catch (err) {
        toast(describe(err), true);
      }
    });
    return form;
  }

  // --- tags -----------------------------------------------------------------------------
  async function tagsSection() {
    const rows = h("div", {});
    const addRow = (k = "", v = "") => {
      const kin = h("input", { type: "text", value: k, "aria-label": "Tag key", placeholder: "key" });
      const vin = h("input", { type: "text", value: v, "aria-label": "Tag value", placeholder: "value" });
      const r = h("div", { class: "row tag-row" }, kin, vin,
        h("button", { type: "button", class: "ghost small", onclick: () => r.remove(), "aria-label": "Remove this tag" }, "Remove"));
      rows.append(r);
    };
    const box = h("form", { class: "card", "aria-labelledby": "tags-title" }, h("h2", { id: "tags-title" }, "Tags"));
    try {
      const doc = await s3xml("GET", bucket, key, { params: { tagging: true, ...(q || {}) } });
      for (const t of xall(doc, "Tag")) addRow(xchild(t, "Key"), xchild(t, "Value"));
    } catch (err) {
      box.append(h("p", { class: "muted" }, describe(err)));
      return box;
    }
    box.append(rows,
      h("div", { class: "row" },
        h("button", { type: "button", class: "ghost small", onclick: () => addRow() }, "Add tag"),
        h("button", { type: "submit" }, "Save tags")),
      h("p", { class: "muted" }, "Up to 10 tags; S3 checks keys and values when you save."));
    box.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const tags = Array.from(rows.querySelectorAll(".tag-row"))
        .map((r) => Array.from(r.querySelectorAll("input")).map((i) => i.value))
        .filter(([k]) => k.trim());
      try {
        if (tags.length) {
          const body = xmlDoc("Tagging", [["TagSet", tags.map(([k, v]) => ["Tag", [["Key", k], ["Value", v]]])]]);
          await s3("PUT", bucket, key, { params: { tagging: true, ...(q || {}) }, headers: { "Content-Type": "application/xml" }, body });
        } else {
          await s3("DELETE", bucket, key, { params: { tagging: true, ...(q || {}) } });
        }
        toast("Tags saved");
      } catch (err) {
        toast(describe(err), true);
      }
    });
    return box;
  }
}

// The version history of one key, a page at a time (ListObjectVersions, whose versions of
// one key come newest first), with what can be done to each version.
async function versionsSection(bucket, key, current, ctx) {
  const section = h("section", { "aria-labelledby": "versions-title" }, h("h2", { id: "versions-title" }, "Versions"));
  const body = h("div", {});
  const pager = h("div", { class: "pager" });
  section.append(body, pager);
  const markers = [["", ""]];
  let page = 0;

  async function load() {
    const [km, vm] = markers[page];
    let doc;
    try {
      doc = await s3xml("GET", bucket, null, {
        params: { versions: true, prefix: key, "max-keys": VERSIONS_PAGE, "key-marker": km || undefined, "version-id-marker": vm || undefined },
      });
    } catch (err) {
      clear(body, h("p", { class: "muted" }, describe(err)));
      return;
    }
    if (!ctx.alive()) return;
    const top = doc.documentElement;
    const all = Array.from(top.children).filter((c) => c.localName === "Version" || c.localName === "DeleteMarker");
    const mine = all.filter((v) => xchild(v, "Key") === key);
    const more = xchild(top, "IsTruncated") === "true" && mine.length === all.length;
    if (!mine.length) {
      clear(body, h("p", { class: "empty" }, "No versions."));
    } else {
      clear(body, h("div", { class: "table-wrap" }, h("table", {},
        h("caption", { class: "hidden" }, "Versions of this object, newest first"),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Version"), h("th", { scope: "col" }, "Last modified"),
          h("th", { scope: "col", class: "right" }, "Size"), h("th", { scope: "col" }, "Actions"))),
        h("tbody", {}, mine.map((v) => versionRow(v))))));
    }
    clear(pager,
      page > 0 ? h("button", { type: "button", class: "ghost", onclick: () => { page -= 1; load(); } }, "Newer versions") : null,
      more ? h("button", { type: "button", class: "ghost", onclick: () => {
        markers[page + 1] = [xchild(top, "NextKeyMarker"), xchild(top, "NextVersionIdMarker")];
        page += 1;
        load();
      } }, "Older versions") : null);
  }

  function versionRow(v) {
    const vid = xchild(v, "VersionId");
    const latest = xchild(v, "IsLatest") === "true";
    const marker = v.localName === "DeleteMarker";
    const params = { versionId: vid }; // "null" names the version written without versioning
    const acts = [];
    if (!marker) {
      acts.push(h("a", { class: "button ghost small", href: link("object", { bucket, key, version: vid }) }, "View"));
      acts.push(h("a", { class: "button ghost small", href: s3url(bucket, key, { ...params, "response-content-disposition": downloadName(key) }), download: key.split("/").pop() }, "Download"));
      if (!latest) acts.push(h("button", { type: "button", class: "small", onclick: () => restore(vid) }, "Restore"));
    }
    acts.push(h("button", { type: "button", class: "ghost danger small", onclick: () => destroy(vid, marker) }, marker ? "Remove marker" : "Delete for good"));
    return h("tr", { dataset: { version: vid } },
      h("td", { class: "mono" }, vid, " ",
        latest ? h("span", { class: "badge accent" }, "latest") : null, " ",
        marker ? h("span", { class: "badge danger" }, "delete marker") : null,
        vid === current ? h("span", { class: "badge" }, "shown") : null),
      h("td", { class: "nowrap" }, when(xchild(v, "LastModified"))),
      h("td", { class: "right nowrap" }, marker ? "–" : bytes(Number(xchild(v, "Size")))),
      h("td", { class: "actions" }, acts));
  }

  async function restore(vid) {
    // S3's way to bring an old version back: copy it onto its own key, which makes it the
    // newest version; nothing is deleted.
    try {
      const resp = await s3("PUT", bucket, key, { headers: { "x-amz-copy-source": copySource(bucket, key, vid) } });
      toast(`Version restored as the newest (${resp.headers.get("x-amz-version-id") || "new version"})`);
      go("object", { bucket, key });
    } catch (err) {
      toast(describe(err), true);
    }
  }

  async function destroy(vid, marker) {
    const msg = marker
      ? "Removing the delete marker brings the previous version back as the newest."
      : "This version is deleted permanently; it cannot be restored.";
    if (!(await confirm(marker ? "Remove the delete marker?" : "Delete this version for good?", msg, marker ? "Remove" : "Delete"))) return;
    try {
      await s3("DELETE", bucket, key, { params: { versionId: vid } });
      toast(marker ? "Delete marker removed" : "Version deleted");
      page = 0;
      await load();
    } catch (err) {
      toast(describe(err), true);
    }
  }

  await load();
  return section;
}
