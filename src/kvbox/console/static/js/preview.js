// Inline previews of an object (or one of its versions): images, audio, video and PDF as
// the browser shows them; text, JSON and Markdown read (the first MiB) and shown as text
// or rendered into DOM nodes. Nothing is ever rendered as HTML in the console's origin:
// an HTML object is shown as its source.

import { s3, s3url } from "./api.js";
import { bytes, h } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const TEXT_LIMIT = 1024 * 1024;
const TEXT_EXT = /\.(txt|log|csv|tsv|ya?ml|toml|ini|cfg|conf|xml|html?|css|js|mjs|ts|py|go|rs|java|c|h|cpp|sh|sql|env|properties)$/i;

export function kindOf(contentType, key) {
  const type = (contentType || "").split(";")[0].trim().toLowerCase();
  const k = key.toLowerCase();
  if (type.startsWith("image/") || /\.(png|jpe?g|gif|webp|svg|bmp|ico|avif)$/.test(k)) return "image";
  if (type.startsWith("video/") || /\.(mp4|webm|ogv|mov)$/.test(k)) return "video";
  if (type.startsWith("audio/") || /\.(mp3|ogg|oga|wav|flac|m4a|opus)$/.test(k)) return "audio";
  if (type === "application/pdf" || k.endsWith(".pdf")) return "pdf";
  if (type === "text/markdown" || /\.(md|markdown)$/.test(k)) return "markdown";
  if (type === "application/json" || type.endsWith("+json") || /\.(json|geojson)$/.test(k)) return "json";
  if (type.startsWith("text/") || TEXT_EXT.test(k)) return "text";
  return null;
}

async function readText(bucket, key, params, size) {
  const resp = await s3("GET", bucket, key, { params, headers: size > TEXT_LIMIT ? { Range: `bytes=0-${TEXT_LIMIT - 1}` } : {} });
  return { text: await resp.text(), cut: size > TEXT_LIMIT };
}

// The preview element for an object whose HeadObject said `contentType` and `size`.
export async function preview(bucket, key, versionId, contentType, size) {
  const params = versionId ? { versionId } : undefined;
  const kind = kindOf(contentType, key);
  const src = s3url(bucket, key, params);
  const name = key.split("/").pop();
  const box = h("div", { class: "preview", "data-kind": kind || "none" });
  if (kind === "image") {
    box.append(h("img", { src, alt: `Preview of ${name}` }));
  } else if (kind === "video") {
    box.append(h("video", { src, controls: true, preload: "metadata", "aria-label": `Video ${name}` }));
  } else if (kind === "audio") {
    box.append(h("audio", { src, controls: true, preload: "metadata", "aria-label": `Audio ${name}` }));
  } else if (kind === "pdf") {
    // A blob: URL of a Blob typed by us as PDF: the browser's PDF viewer shows it, and
    // the bytes can never be taken for HTML in this origin.
    const resp = await s3("GET", bucket, key, { params });
    const url = URL.createObjectURL(new Blob([await resp.arrayBuffer()], { type: "application/pdf" }));
    box.append(h("iframe", { src: url, title: `PDF ${name}` }));
  } else if (kind === "markdown" || kind === "json" || kind === "text") {
    const { text, cut } = await readText(bucket, key, params, size);
    if (kind === "markdown") {
      box.append(renderMarkdown(text));
    } else if (kind === "json") {
      let shown = text;
      try {
        shown = JSON.stringify(JSON.parse(text), null, 2);
      } catch { /* not valid JSON (or cut short): show it as it is */ }
      box.append(h("pre", { tabindex: "0", "aria-label": `Contents of ${name}` }, shown));
    } else {
      box.append(h("pre", { tabindex: "0", "aria-label": `Contents of ${name}` }, text));
    }
    if (cut) box.append(h("p", { class: "muted" }, `Showing the first ${bytes(TEXT_LIMIT)} of ${bytes(size)}.`));
  } else {
    box.append(h("p", { class: "muted" }, `No preview for ${contentType || "this type"}; download it to open it.`));
  }
  return box;
}
