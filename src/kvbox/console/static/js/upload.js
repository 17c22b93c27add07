// Uploads: one progress bar per file; a single PutObject for small files, a multipart
// upload for large ones that survives a dropped connection (each part is retried) and a
// closed page (the upload id is remembered in localStorage, and uploading the same file
// to the same key again resumes it: parts already on the server, whose ETag matches the
// part's MD5, are not sent again).
//
// Every request carries Content-MD5, so a part damaged on the way is refused by the
// server rather than stored.

import { ApiError, encodeKey, parseXml, s3, s3xml, session, xall, xchild, xmlDoc } from "./api.js";
import { bytes, h, toast } from "./dom.js";
import { md5Blob, toBase64, toHex } from "./md5.js";

// Files up to this size go up in one PutObject.
export const MULTIPART_THRESHOLD = 8 * 1024 * 1024;
// S3's smallest part (but the last) is 5 MiB and an upload has at most 10,000 parts.
const MIN_PART = 8 * 1024 * 1024;
const MAX_PARTS = 10000;
// A failed part is tried again this many times, after these pauses (ms).
const RETRY_DELAYS = [500, 1000, 2000];
const PARALLEL_PARTS = 2;
const PARALLEL_FILES = 2;
const STORE_PREFIX = "kvbox-upload:";

function partSizeFor(size) {
  const mib = 1024 * 1024;
  return Math.max(MIN_PART, Math.ceil(size / MAX_PARTS / mib) * mib);
}

// Where a multipart upload of this file to this key is remembered. No secret is kept:
// an upload id is useless without the user's credentials.
function recordKey(bucket, key, file) {
  return `${STORE_PREFIX}${JSON.stringify([session.info && session.info.access_key, bucket, key, file.name, file.size, file.lastModified])}`;
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

// PUT a Blob with upload progress (fetch cannot report it; XMLHttpRequest can).
function put(url, blob, headers, onProgress, track) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    track.add(xhr);
    xhr.open("PUT", url);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.setRequestHeader("X-Kvbox-CSRF", session.info.csrf);
    xhr.upload.onprogress = (ev) => onProgress(ev.loaded);
    xhr.onload = () => {
      track.delete(xhr);
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(xhr.getResponseHeader("ETag") || "");
        return;
      }
      const text = xhr.responseText || "";
      let code = String(xhr.status);
      let message = xhr.statusText;
      if (text.startsWith("<")) {
        const doc = parseXml(text);
        code = xchild(doc.documentElement, "Code") || code;
        message = xchild(doc.documentElement, "Message") || message;
      } else if (text.startsWith("{")) {
        try {
          const doc = JSON.parse(text);
          code = doc.error || code;
          message = doc.message || message;
        } catch { /* keep the status */ }
      }
      reject(new ApiError(xhr.status, code, message));
    };
    xhr.onerror = () => {
      track.delete(xhr);
      reject(new ApiError(0, "NetworkError", "the connection dropped"));
    };
    xhr.onabort = () => {
      track.delete(xhr);
      reject(new ApiError(0, "Aborted", "cancelled"));
    };
    xhr.send(blob);
  });
}

// Worth trying again: the connection dropped, or the server was busy or failed.
function transient(err) {
  return err instanceof ApiError && (err.status === 0 || err.status >= 500 || err.status === 429)
    && err.code !== "Aborted";
}

function objectUrl(bucket, key, params = "") {
  return `api/s3/${encodeURIComponent(bucket)}/${encodeKey(key)}${params}`;
}

class Upload {
  constructor(manager, bucket, key, file) {
    this.manager = manager;
    this.bucket = bucket;
    this.key = key;
    this.file = file;
    this.cancelled = false;
    this.track = new Set(); // requests in flight, so Cancel can stop them all
    this.parts = new Map();
    this.bar = h("progress", { max: Math.max(1, file.size), value: 0, "aria-label": `Upload of ${key}` });
    this.text = h("span", { class: "muted" }, "waiting");
    this.actions = h("span", {});
    this.row = h("li", { dataset: { key } },
      h("span", { class: "file" }, key), h("span", { class: "nowrap" }, this.text, " ", this.actions), this.bar);
  }

  status(text) {
    this.text.textContent = text;
  }

  progress(done) {
    this.bar.value = done;
    const pct = this.file.size ? Math.floor((done / this.file.size) * 100) : 100;
    this.status(`${pct}% of ${bytes(this.file.size)}`);
  }

  async run() {
    this.actions.replaceChildren(h("button", { type: "button", class: "ghost small", onclick: () => this.cancel() }, "Cancel"));
    try {
      if (this.file.size > MULTIPART_THRESHOLD) await this.multipart();
      else await this.single();
      this.bar.value = this.bar.max;
      this.status(`done, ${bytes(this.file.size)}`);
      this.actions.replaceChildren();
      this.row.dataset.state = "done";
      return true;
    } catch (err) {
      if (this.cancelled) {
        this.status("cancelled");
        this.row.dataset.state = "cancelled";
        this.actions.replaceChildren();
        return false;
      }
      this.row.dataset.state = "failed";
      this.status(`failed: ${err.code ? `${err.code}: ` : ""}${err.message}`);
      this.actions.replaceChildren(h("button", { type: "button", class: "small", onclick: () => this.manager.retry(this) }, "Retry"));
      return false;
    }
  }

  async single() {
    const md5 = toBase64(await md5Blob(this.file));
    await this.withRetries(() => put(objectUrl(this.bucket, this.key), this.file, {
      "Content-Type": this.file.type || "application/octet-stream",
      "Content-MD5": md5,
    }, (n) => this.progress(n), this.track));
  }

  async withRetries(attempt, label = "") {
    for (let i = 0; ; i += 1) {
      if (this.cancelled) throw new ApiError(0, "Aborted", "cancelled");
      try {
        return await attempt();
      } catch (err) {
        if (!transient(err) || i >= RETRY_DELAYS.length || this.cancelled) throw err;
        this.status(`connection lost${label}; trying again (${i + 1} of ${RETRY_DELAYS.length})`);
        await sleep(RETRY_DELAYS[i]);
      }
    }
  }

  async multipart() {
    const file = this.file;
    const record = recordKey(this.bucket, this.key, file);
    const saved = JSON.parse(localStorage.getItem(record) || "null");
    const partSize = saved ? saved.partSize : partSizeFor(file.size);
    const count = Math.ceil(file.size / partSize);
    let uploadId = saved && saved.uploadId;
    const already = new Map();
    if (uploadId) {
      try {
        for (const p of await this.listParts(uploadId)) already.set(p.number, p);
        this.resumed = true;
      } catch (err) {
        if (!(err instanceof ApiError && err.code === "NoSuchUpload")) throw err;
        uploadId = null; // completed or aborted meanwhile: start over
        localStorage.removeItem(record);
      }
    }
    if (!uploadId) {
      const doc = await s3xml("POST", this.bucket, this.key, {
        params: { uploads: true },
        headers: { "Content-Type": file.type || "application/octet-stream" },
      });
      uploadId = xchild(doc.documentElement, "UploadId");
      localStorage.setItem(record, JSON.stringify({ uploadId, partSize, started: Date.now() }));
    }
    this.uploadId = uploadId;
    this.record = record;
    const sent = new Array(count + 1).fill(0);
    const report = () => this.progress(sent.reduce((a, b) => a + b, 0));
    const etags = new Array(count + 1);
    let skipped = 0;
    const todo = [];
    for (let n = 1; n <= count; n += 1) todo.push(n);
    let stop = false; // one part failed for good: the others stop too
    const worker = async () => {
      while (todo.length && !stop) {
        const n = todo.shift();
        const blob = file.slice((n - 1) * partSize, Math.min(file.size, n * partSize));
        const md5 = await md5Blob(blob);
        const have = already.get(n);
        if (have && have.size === blob.size && have.etag === `"${toHex(md5)}"`) {
          etags[n] = have.etag; // this part arrived intact before: not sent again
          sent[n] = blob.size;
          skipped += 1;
          report();
          continue;
        }
        etags[n] = await this.withRetries(() => put(
          objectUrl(this.bucket, this.key, `?partNumber=${n}&uploadId=${encodeURIComponent(uploadId)}`),
          blob, { "Content-MD5": toBase64(md5) },
          (done) => { sent[n] = done; report(); },
          this.track,
        ), ` at part ${n}`);
        sent[n] = blob.size;
        report();
      }
    };
    const guarded = async () => {
      try {
        await worker();
      } catch (err) {
        stop = true;
        for (const xhr of [...this.track]) xhr.abort();
        throw err;
      }
    };
    // allSettled, so no part is still on the wire when this upload reports its failure
    const results = await Promise.allSettled(Array.from({ length: Math.min(PARALLEL_PARTS, count) }, guarded));
    const failed = results.find((r) => r.status === "rejected" && !(r.reason instanceof ApiError && r.reason.code === "Aborted" && !this.cancelled));
    if (failed) throw failed.reason;
    const aborted = results.find((r) => r.status === "rejected");
    if (aborted) throw aborted.reason;
    const body = xmlDoc("CompleteMultipartUpload",
      etags.slice(1).map((etag, i) => ["Part", [["PartNumber", String(i + 1)], ["ETag", etag]]]));
    this.status("finishing");
    const resp = await s3("POST", this.bucket, this.key, {
      params: { uploadId }, headers: { "Content-Type": "application/xml" }, body,
    });
    // S3 may answer 200 and still report an error in the body of a completion.
    const text = await resp.text();
    if (text.includes("<Error>")) {
      const doc = parseXml(text);
      throw new ApiError(500, xchild(doc.documentElement, "Code"), xchild(doc.documentElement, "Message"));
    }
    localStorage.removeItem(record);
    if (skipped) toast(`${this.key}: resumed; ${skipped} of ${count} parts were already uploaded`);
  }

  async listParts(uploadId) {
    const out = [];
    let marker = "";
    for (;;) {
      const doc = await s3xml("GET", this.bucket, this.key, { params: { uploadId, "part-number-marker": marker || undefined } });
      for (const p of xall(doc, "Part")) {
        out.push({ number: Number(xchild(p, "PartNumber")), etag: xchild(p, "ETag"), size: Number(xchild(p, "Size")) });
      }
      if (xchild(doc.documentElement, "IsTruncated") !== "true") return out;
      marker = xchild(doc.documentElement, "NextPartNumberMarker");
    }
  }

  async cancel() {
    this.cancelled = true;
    for (const xhr of [...this.track]) xhr.abort();
    if (this.uploadId) {
      try {
        await s3("DELETE", this.bucket, this.key, { params: { uploadId: this.uploadId } });
      } catch { /* already gone */ }
      localStorage.removeItem(this.record);
    }
  }
}

// The list of uploads on a page, and the queue that runs them a few at a time.
export class UploadManager {
  constructor(onDone) {
    this.onDone = onDone;
    this.list = h("ul", { class: "uploads", "aria-label": "Uploads" });
    this.queue = [];
    this.running = 0;
  }

  add(bucket, entries) {
    for (const { key, file } of entries) {
      const up = new Upload(this, bucket, key, file);
      this.list.append(up.row);
      this.queue.push(up);
    }
    this.pump();
  }

  retry(up) {
    up.cancelled = false;
    up.status("waiting");
    this.queue.push(up);
    this.pump();
  }

  pump() {
    while (this.running < PARALLEL_FILES && this.queue.length) {
      const up = this.queue.shift();
      this.running += 1;
      up.run().then((ok) => {
        this.running -= 1;
        if (ok) this.onDone(up);
        this.pump();
      });
    }
  }
}

// Files of a drop: plain files, and whole folders walked with the File System entries
// API (keys keep the folder structure).
export async function droppedFiles(dataTransfer) {
  const entries = Array.from(dataTransfer.items || [])
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
    .filter(Boolean);
  if (!entries.length) return Array.from(dataTransfer.files || []).map((file) => ({ path: file.name, file }));
  const out = [];
  const walk = async (entry, path) => {
    if (entry.isFile) {
      const file = await new Promise((ok, bad) => entry.file(ok, bad));
      out.push({ path: path + entry.name, file });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${path}${entry.name}/`);
      }
    }
  };
  for (const entry of entries) await walk(entry, "");
  return out;
}
