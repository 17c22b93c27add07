// A bucket's settings, each read and written through its own S3 API call: versioning,
// Block Public Access, the bucket policy (policy.js), object lock (lock.js), lifecycle
// (lifecycle.js), static website, CORS.

import { getConfig, s3, s3xml, session, xall, xchild, xkids, xmlDoc, xtext } from "./api.js";
import { check, clear, field, h, heading, toast } from "./dom.js";
import { aclSection, ownershipCard } from "./acl.js";
import { lifecyclePanel } from "./lifecycle.js";
import { bucketLockPanel } from "./lock.js";
import { policyPanel } from "./policy.js";
import { describe, link } from "./routes.js";

const TABS = [
  ["versioning", "Versioning"],
  ["permissions", "Permissions"],
  ["lock", "Object lock"],
  ["lifecycle", "Lifecycle"],
  ["website", "Website"],
  ["cors", "CORS"],
];

// PUT a configuration document (``s3`` adds its Content-MD5, which S3 requires of several).
export async function putConfig(bucket, param, body) {
  return s3("PUT", bucket, null, { params: { [param]: true }, headers: { "Content-Type": "application/xml" }, body });
}

function failure(err) {
  return h("div", { class: "alert", role: "alert" }, describe(err));
}

export async function render(root, params, ctx) {
  const bucket = params.get("bucket") || "";
  const tab = TABS.some(([t]) => t === params.get("tab")) ? params.get("tab") : "versioning";
  root.append(
    heading(`Settings of ${bucket}`),
    h("nav", { "aria-label": "Breadcrumbs" }, h("ol", { class: "crumbs" },
      h("li", {}, h("a", { href: link("buckets") }, "Buckets")),
      h("li", {}, h("a", { href: link("objects", { bucket }) }, bucket)),
      h("li", {}, h("span", { "aria-current": "page" }, "Settings")))),
    h("nav", { class: "tabs", "aria-label": "Settings sections" },
      TABS.map(([t, label]) => h("a", { href: link("settings", { bucket, tab: t }), "aria-current": t === tab ? "page" : null }, label))));
  const panel = h("div", {});
  root.append(panel);
  const panels = { versioning, permissions, lock: bucketLockPanel, lifecycle: lifecyclePanel, website, cors };
  try {
    await panels[tab](panel, bucket, ctx);
  } catch (err) {
    panel.append(failure(err));
  }
}

// --- versioning ---------------------------------------------------------------------------

async function versioning(panel, bucket) {
  const doc = await s3xml("GET", bucket, null, { params: { versioning: true } });
  const status = xtext(doc, "Status");
  const state = h("p", { id: "versioning-state" }, "Versioning is ",
    h("strong", {}, status === "Enabled" ? "enabled" : status === "Suspended" ? "suspended" : "off (never enabled)"), ".");
  const enabled = h("input", { type: "radio", name: "versioning", value: "Enabled", checked: status === "Enabled" });
  const suspended = h("input", { type: "radio", name: "versioning", value: "Suspended", checked: status === "Suspended" });
  const form = h("form", { class: "card" },
    h("h2", {}, "Versioning"), state,
    h("fieldset", {}, h("legend", {}, "Keep every version of every object?"),
      check("Enabled", enabled, "every write keeps the previous version; deletes add a delete marker"),
      check("Suspended", suspended, "new writes replace the “null” version; existing versions stay")),
    h("p", { class: "muted" }, "S3 never turns versioning off once it was on: it can only be suspended."),
    h("button", { type: "submit" }, "Save versioning"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const choice = form.querySelector("input[name=versioning]:checked");
    if (!choice) return;
    try {
      await putConfig(bucket, "versioning", xmlDoc("VersioningConfiguration", [["Status", choice.value]]));
      toast(`Versioning ${choice.value === "Enabled" ? "enabled" : "suspended"}`);
      clear(panel);
      await versioning(panel, bucket);
    } catch (err) {
      toast(describe(err), true);
    }
  });
  panel.append(form);
}

// --- permissions: Block Public Access, then the policy ------------------------------------

const PAB_FLAGS = [
  ["BlockPublicAcls", "Block public ACLs", "refuse requests that set a public ACL"],
  ["IgnorePublicAcls", "Ignore public ACLs", "public ACLs already set grant nothing"],
  ["BlockPublicPolicy", "Block public bucket policies", "refuse a policy that would make the bucket public"],
  ["RestrictPublicBuckets", "Restrict public buckets", "a public policy grants only to you and root, not to anonymous requests"],
];

async function permissions(panel, bucket, ctx) {
  const pab = await getConfig(bucket, "publicAccessBlock");
  const boxes = PAB_FLAGS.map(([name, label, hint]) => [name, h("input", { type: "checkbox", name, checked: pab ? xtext(pab, name) === "true" : false }), label, hint]);
  const form = h("form", { class: "card", "aria-labelledby": "pab-title" },
    h("h2", { id: "pab-title" }, "Block Public Access"),
    h("p", { class: "muted" }, pab ? "This bucket has a Block Public Access configuration." : "No Block Public Access configuration: public policies and ACLs work."),
    boxes.map(([, box, label, hint]) => check(label, box, hint)),
    h("div", { class: "row" },
      h("button", { type: "submit" }, "Save Block Public Access"),
      pab ? h("button", { type: "button", class: "ghost danger", onclick: () => removePab() }, "Remove configuration") : null));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await putConfig(bucket, "publicAccessBlock", xmlDoc("PublicAccessBlockConfiguration", boxes.map(([name, box]) => [name, box.checked ? "true" : "false"])));
      toast("Block Public Access saved");
    } catch (err) {
      toast(describe(err), true);
    }
  });
  async function removePab() {
    try {
      await s3("DELETE", bucket, null, { params: { publicAccessBlock: true } });
      toast("Block Public Access configuration removed");
      clear(panel);
      await permissions(panel, bucket, ctx);
    } catch (err) {
      toast(describe(err), true);
    }
  }
  const refresh = async () => {
    clear(panel);
    await permissions(panel, bucket, ctx);
  };
  panel.append(form, await policyPanel(bucket, ctx), await ownershipCard(bucket, refresh),
    await aclSection(bucket, null));
}

// --- static website ----------------------------------------------------------------------

function websiteUrl(bucket) {
  const w = session.info && session.info.website;
  if (!w) return null;
  const host = w.domain ? `${bucket}.${w.domain}` : bucket;
  return `${w.scheme}://${host}:${w.port}/`;
}

async function website(panel, bucket) {
  const doc = await getConfig(bucket, "website");
  const index = h("input", { type: "text", value: doc ? xtext(doc, "Suffix") : "index.html" });
  const error = h("input", { type: "text", value: doc ? xchild(xall(doc, "ErrorDocument")[0] || doc.documentElement, "Key") : "" });
  const url = websiteUrl(bucket);
  const form = h("form", { class: "card", "aria-labelledby": "web-title" },
    h("h2", { id: "web-title" }, "Static website"),
    h("p", {}, doc ? "Website hosting is on." : "Website hosting is off."),
    url
      ? h("p", {}, "Website endpoint: ", h("a", { href: url, rel: "noopener noreferrer", target: "_blank", id: "website-link" }, url),
        h("span", { class: "muted" }, " (visitors are anonymous: make the pages public with a policy)"))
      : h("p", { class: "muted" }, "This server has no website endpoint; start it with --web-port to serve websites."),
    field("Index document", index, "Served for a folder path, e.g. index.html"),
    field("Error document", error, "Served with 404 for a missing page (optional), e.g. 404.html"),
    h("div", { class: "row" },
      h("button", { type: "submit" }, "Save website"),
      doc ? h("button", { type: "button", class: "ghost danger", onclick: () => off() }, "Turn website off") : null));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const content = [["IndexDocument", [["Suffix", index.value.trim()]]]];
    if (error.value.trim()) content.push(["ErrorDocument", [["Key", error.value.trim()]]]);
    try {
      await putConfig(bucket, "website", xmlDoc("WebsiteConfiguration", content));
      toast("Website saved");
      clear(panel);
      await website(panel, bucket);
    } catch (err) {
      toast(describe(err), true);
    }
  });
  async function off() {
    try {
      await s3("DELETE", bucket, null, { params: { website: true } });
      toast("Website turned off");
      clear(panel);
      await website(panel, bucket);
    } catch (err) {
      toast(describe(err), true);
    }
  }
  panel.append(form);
}

// --- CORS --------------------------------------------------------------------------------

const METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD"];

async function cors(panel, bucket) {
  const doc = await getConfig(bucket, "cors");
  const rulesBox = h("div", {});
  const lines = (el, name) => xkids(el, name).map((x) => x.textContent).join("\n");
  const addRule = (rule) => {
    const n = rulesBox.children.length + 1;
    const origins = h("textarea", { rows: 2 }, rule ? lines(rule, "AllowedOrigin") : "");
    const headers = h("textarea", { rows: 2 }, rule ? lines(rule, "AllowedHeader") : "");
    const expose = h("textarea", { rows: 2 }, rule ? lines(rule, "ExposeHeader") : "");
    const maxAge = h("input", { type: "number", min: "0", value: rule ? xchild(rule, "MaxAgeSeconds") : "" });
    const allowed = rule ? xkids(rule, "AllowedMethod").map((m) => m.textContent) : ["GET"];
    const methods = METHODS.map((m) => h("input", { type: "checkbox", value: m, checked: allowed.includes(m) }));
    const card = h("fieldset", { class: "cors-rule" }, h("legend", {}, `Rule ${n}`),
      field("Allowed origins", origins, "One per line: an origin (scheme, host and port of the calling page) or *"),
      h("fieldset", {}, h("legend", {}, "Allowed methods"), h("div", { class: "row" }, methods.map((box) => check(box.value, box)))),
      field("Allowed headers", headers, "Request headers a browser may send, one per line (* for any)"),
      field("Exposed headers", expose, "Response headers a page may read, one per line, e.g. ETag"),
      field("Max age (seconds)", maxAge, "How long a browser may cache the preflight"),
      h("button", { type: "button", class: "ghost danger small", onclick: () => card.remove() }, "Remove rule"));
    card.collect = () => {
      const split = (t) => t.value.split("\n").map((s) => s.trim()).filter(Boolean);
      const out = [
        ...split(origins).map((o) => ["AllowedOrigin", o]),
        ...methods.filter((b) => b.checked).map((b) => ["AllowedMethod", b.value]),
        ...split(headers).map((x) => ["AllowedHeader", x]),
        ...split(expose).map((x) => ["ExposeHeader", x]),
      ];
      if (maxAge.value) out.push(["MaxAgeSeconds", maxAge.value]);
      return ["CORSRule", out];
    };
    rulesBox.append(card);
  };
  for (const rule of doc ? xall(doc, "CORSRule") : []) addRule(rule);
  const form = h("form", { class: "card", "aria-labelledby": "cors-title" },
    h("h2", { id: "cors-title" }, "Cross-origin resource sharing (CORS)"),
    h("p", { class: "muted" }, "Which other web pages may call this bucket from a browser, and how."),
    rulesBox,
    h("div", { class: "row" },
      h("button", { type: "button", class: "ghost", onclick: () => addRule(null) }, "Add rule"),
      h("button", { type: "submit" }, "Save CORS"),
      doc ? h("button", { type: "button", class: "ghost danger", onclick: () => off() }, "Delete CORS configuration") : null));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const rules = Array.from(rulesBox.children).map((c) => c.collect());
    try {
      if (!rules.length) await s3("DELETE", bucket, null, { params: { cors: true } });
      else await putConfig(bucket, "cors", xmlDoc("CORSConfiguration", rules));
      toast("CORS saved");
    } catch (err) {
      toast(describe(err), true);
    }
  });
  async function off() {
    try {
      await s3("DELETE", bucket, null, { params: { cors: true } });
      toast("CORS configuration deleted");
      clear(panel);
      await cors(panel, bucket);
    } catch (err) {
      toast(describe(err), true);
    }
  }
  panel.append(form);
}
