// Buckets: the list (with object counts and bytes where the user may list the bucket),
// create, delete, and "empty it first" for a bucket that still holds objects.

import { ApiError, json, s3, s3xml, xall, xchild, xmlDoc, xtext } from "./api.js";
import { describe, link } from "./routes.js";
import { bytes, check, clear, confirm, count, dialog, field, h, heading, toast, when } from "./dom.js";
import { contentMd5 } from "./md5.js";

// Buckets a page (ListBuckets' max-buckets; a user may own thousands), and bucket names
// per stats request: 40 of S3's longest names keep the query far below the request-line
// limit any HTTP server (and proxy) sets.
const PAGE = 100;
const STAT_NAMES = 40;

export async function render(root, params, ctx) {
  const listArea = h("div", {}, h("p", { class: "muted" }, "Loading buckets…"));
  const name = h("input", { type: "text", name: "bucket", autocomplete: "off", spellcheck: "false", autocapitalize: "off", required: true, "aria-describedby": "new-bucket-error" });
  const error = h("div", { id: "new-bucket-error", class: "alert", role: "alert", hidden: true });
  const lock = h("input", { type: "checkbox", name: "object-lock" });
  const ownership = h("select", { name: "ownership" },
    h("option", { value: "BucketOwnerEnforced" }, "ACLs disabled: the bucket owner owns every object (recommended)"),
    h("option", { value: "ObjectWriter" }, "ACLs enabled: an object belongs to the user who wrote it"));
  const form = h("form", { class: "card", "aria-label": "Create a bucket" },
    h("h2", {}, "Create a bucket"),
    field("Bucket name", name, "3–63 characters: lower-case letters, digits, dots and hyphens; starts and ends with a letter or digit."),
    check("Object lock", lock, "versions can be locked against deletion; turns versioning on, and cannot be turned off"),
    field("Object ownership", ownership),
    error,
    h("button", { type: "submit" }, "Create bucket"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    const bucket = name.value.trim();
    try {
      const headers = { "x-amz-object-ownership": ownership.value };
      if (lock.checked) headers["x-amz-bucket-object-lock-enabled"] = "true";
      await s3("PUT", bucket, null, { headers });
      toast(`Bucket ${bucket} created`);
      name.value = "";
      lock.checked = false;
      ownership.value = "BucketOwnerEnforced";
      await load();
    } catch (err) {
      // The S3 door's own answer (InvalidBucketName with its reason, BucketAlreadyExists…).
      error.textContent = describe(err);
      error.hidden = false;
      name.focus();
    }
  });
  const pager = h("div", { class: "pager" });
  root.append(heading("Buckets"), form, listArea, pager);
  // ListBuckets pages: tokens[i] is the continuation token of page i ("" for the first)
  const tokens = [""];
  let page = 0;

  async function load() {
    const doc = await s3xml("GET", null, null, { params: { "max-buckets": PAGE, "continuation-token": tokens[page] || undefined } });
    const buckets = xall(doc, "Bucket").map((b) => ({ name: xchild(b, "Name"), created: xchild(b, "CreationDate") }));
    if (!ctx.alive()) return;
    const next = xtext(doc, "ContinuationToken");
    clear(pager, page === 0 && !next ? null : [
      h("button", { type: "button", class: "ghost", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous page"),
      h("span", { class: "muted" }, `Page ${page + 1}`),
      h("button", { type: "button", class: "ghost", disabled: !next, onclick: () => { tokens[page + 1] = next; page += 1; load(); } }, "Next page")]);
    if (!buckets.length) {
      clear(listArea, h("p", { class: "empty" }, page ? "No more buckets." : "No buckets yet. Create one above."));
      return;
    }
    const rows = buckets.map((b) => {
      const objects = h("td", { class: "right" }, "…");
      const size = h("td", { class: "right" }, "…");
      const tr = h("tr", {},
        h("td", { class: "name" }, h("a", { href: link("objects", { bucket: b.name }) }, b.name)),
        objects, size,
        h("td", { class: "hide-narrow nowrap" }, when(b.created)),
        h("td", { class: "actions" },
          h("a", { class: "button ghost small", href: link("settings", { bucket: b.name }), "aria-label": `Settings of ${b.name}` }, "Settings"),
          " ",
          h("button", { type: "button", class: "ghost danger small", "aria-label": `Delete bucket ${b.name}`, onclick: () => remove(b.name) }, "Delete")));
      return { b, tr, objects, size };
    });
    clear(listArea, h("div", { class: "table-wrap" }, h("table", {},
      h("caption", { class: "hidden" }, "Your buckets"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Name"),
        h("th", { scope: "col", class: "right" }, "Objects"),
        h("th", { scope: "col", class: "right" }, "Size"),
        h("th", { scope: "col", class: "hide-narrow" }, "Created"),
        h("th", { scope: "col" }, h("span", { class: "hidden" }, "Actions")))),
      h("tbody", {}, rows.map((r) => r.tr)))));
    // Counts come from the server's counters, for buckets the user may list (the
    // console asks the S3 door first); "–" where the API would not let them list.
    for (let i = 0; i < rows.length; i += STAT_NAMES) {
      const some = rows.slice(i, i + STAT_NAMES);
      const stats = await json("GET", "stats", undefined, { bucket: some.map((r) => r.b.name) });
      if (!ctx.alive()) return;
      for (const r of some) {
        const st = stats.buckets[r.b.name];
        r.objects.textContent = st ? count(st.objects) : "–";
        r.size.textContent = st ? bytes(st.bytes) : "–";
        if (!st) r.objects.title = r.size.title = "You may not list this bucket";
      }
    }
  }

  async function remove(bucket) {
    if (!(await confirm(`Delete bucket ${bucket}?`, "The bucket is deleted only if it is empty."))) return;
    try {
      await s3("DELETE", bucket);
      toast(`Bucket ${bucket} deleted`);
      await load();
    } catch (err) {
      if (err instanceof ApiError && err.code === "BucketNotEmpty") {
        await offerEmpty(bucket);
      } else {
        toast(describe(err), true);
      }
    }
  }

  async function offerEmpty(bucket) {
    const answer = await dialog(`Bucket ${bucket} is not empty`,
      h("div", {},
        h("p", {}, "S3 deletes only empty buckets. Empty it first? Every object, every old version and every delete marker is deleted for good, and unfinished uploads are aborted."),
        h("p", { class: "warn" }, "This cannot be undone.")),
      [["Cancel", ""], ["Empty and delete", "empty", "danger"]]);
    if (answer !== "empty") return;
    await emptyBucket(bucket, listArea);
    try {
      await s3("DELETE", bucket);
      toast(`Bucket ${bucket} emptied and deleted`);
    } catch (err) {
      toast(describe(err), true);
    }
    await load();
  }

  await load();
}

// Delete every version, delete marker and multipart upload in a bucket, 1,000 at a time,
// showing progress. Each DeleteObjects carries Content-MD5, as S3 requires.
export async function emptyBucket(bucket, where) {
  const progress = h("progress", { max: 1, value: 0, "aria-label": `Emptying ${bucket}` });
  const text = h("span", { class: "muted" }, "Counting…");
  const box = h("div", { class: "card", role: "group", "aria-label": `Emptying ${bucket}` }, h("h2", {}, `Emptying ${bucket}`), progress, " ", text);
  where.prepend(box);
  let total = 0;
  try {
    const stats = await json("GET", "stats", undefined, { bucket });
    total = stats.buckets[bucket] ? stats.buckets[bucket].objects : 0;
  } catch { /* the count is only for the bar */ }
  let deleted = 0;
  let failed = 0;
  for (;;) {
    const doc = await s3xml("GET", bucket, null, { params: { versions: true, "max-keys": 1000 } });
    const entries = [...xall(doc, "Version"), ...xall(doc, "DeleteMarker")]
      .map((v) => ({ key: xchild(v, "Key"), version: xchild(v, "VersionId") }));
    if (!entries.length) break;
    const body = xmlDoc("Delete", [["Quiet", "true"], ...entries.map((e) => ["Object", [["Key", e.key], ["VersionId", e.version]]])]);
    const result = await s3xml("POST", bucket, null, { params: { delete: true }, headers: { "Content-Type": "application/xml", "Content-MD5": contentMd5(body) }, body });
    const errors = xall(result, "Error");
    failed += errors.length;
    deleted += entries.length - errors.length;
    progress.max = Math.max(total, deleted, 1);
    progress.value = deleted;
    text.textContent = `${count(deleted)} deleted${total ? ` of about ${count(total)} objects (with their versions)` : ""}`;
    if (errors.length === entries.length) {
      text.textContent = `Stopped: ${xtext(errors[0], "Code")}: ${xtext(errors[0], "Message")}`;
      return;
    }
  }
  const uploads = await s3xml("GET", bucket, null, { params: { uploads: true } });
  for (const u of xall(uploads, "Upload")) {
    await s3("DELETE", bucket, xchild(u, "Key"), { params: { uploadId: xchild(u, "UploadId") } });
  }
  progress.max = 1;
  progress.value = 1;
  text.textContent = `${count(deleted)} deleted${failed ? `, ${failed} refused` : ""}.`;
  setTimeout(() => box.remove(), 3000);
}
