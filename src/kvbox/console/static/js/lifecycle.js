// A bucket's lifecycle rules, read and written with Get/PutBucketLifecycleConfiguration.
// The form covers the rules people write by hand (a prefix; expire current versions after
// N days or remove expired delete markers; expire noncurrent versions; abort unfinished
// uploads). A rule using more than that (tag or size filters, a date) is shown as its XML
// and saved back unchanged, never silently dropped. What a rule does is the server's.

import { getConfig, s3, xall, xchild, xkids, xmlDoc } from "./api.js";
import { check, clear, field, h, toast } from "./dom.js";
import { describe } from "./routes.js";

const FORM_ELEMENTS = new Set(["ID", "Status", "Filter", "Prefix", "Expiration", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload"]);

// Whether the form can show (and so rewrite) this rule without losing anything.
function formable(rule) {
  for (const el of rule.children) {
    if (!FORM_ELEMENTS.has(el.localName)) return false;
  }
  const filter = xkids(rule, "Filter")[0];
  if (filter && [...filter.children].some((c) => c.localName !== "Prefix")) return false;
  const exp = xkids(rule, "Expiration")[0];
  if (exp && xkids(exp, "Date").length) return false;
  return true;
}

function ruleCard(rulesBox, rule) {
  const n = rulesBox.children.length + 1;
  const raw = rule && !formable(rule) ? new XMLSerializer().serializeToString(rule) : null;
  if (raw !== null) {
    const card = h("fieldset", { class: "lifecycle-rule" }, h("legend", {}, `Rule ${n}: ${xchild(rule, "ID") || "(no ID)"}`),
      h("p", { class: "muted" }, "This rule uses filters or actions the form does not edit; it is kept as it is."),
      h("pre", {}, raw),
      h("button", { type: "button", class: "ghost danger small", onclick: () => card.remove() }, "Remove rule"));
    card.collect = () => ({ raw });
    rulesBox.append(card);
    return;
  }
  const get = (path) => {
    let el = rule;
    for (const name of path) {
      el = el ? xkids(el, name)[0] : null;
    }
    return el ? el.textContent : "";
  };
  const id = h("input", { type: "text", value: rule ? get(["ID"]) : "" });
  const enabled = h("input", { type: "checkbox", checked: rule ? get(["Status"]) === "Enabled" : true });
  const prefix = h("input", { type: "text", value: rule ? get(["Filter", "Prefix"]) || get(["Prefix"]) : "" });
  const days = h("input", { type: "number", min: "1", value: rule ? get(["Expiration", "Days"]) : "" });
  const markers = h("input", { type: "checkbox", checked: rule ? get(["Expiration", "ExpiredObjectDeleteMarker"]) === "true" : false });
  const noncurrent = h("input", { type: "number", min: "1", value: rule ? get(["NoncurrentVersionExpiration", "NoncurrentDays"]) : "" });
  const keep = h("input", { type: "number", min: "1", max: "100", value: rule ? get(["NoncurrentVersionExpiration", "NewerNoncurrentVersions"]) : "" });
  const abort = h("input", { type: "number", min: "1", value: rule ? get(["AbortIncompleteMultipartUpload", "DaysAfterInitiation"]) : "" });
  const card = h("fieldset", { class: "lifecycle-rule" }, h("legend", {}, `Rule ${n}`),
    field("Rule ID", id, "A name for the rule (S3 makes one up if empty)"),
    check("Enabled", enabled),
    field("Applies to keys starting with", prefix, "Empty: the whole bucket"),
    field("Expire current versions after (days)", days, "In a versioned bucket this adds a delete marker; otherwise the object is deleted"),
    check("Remove expired delete markers", markers, "a delete marker with no versions left behind it"),
    field("Delete noncurrent versions after (days)", noncurrent),
    field("…but keep this many newest noncurrent versions", keep, "Optional, 1–100"),
    field("Abort unfinished multipart uploads after (days)", abort),
    h("button", { type: "button", class: "ghost danger small", onclick: () => card.remove() }, "Remove rule"));
  card.collect = () => {
    const out = [];
    if (id.value.trim()) out.push(["ID", id.value.trim()]);
    out.push(["Filter", [["Prefix", prefix.value]]]);
    out.push(["Status", enabled.checked ? "Enabled" : "Disabled"]);
    if (days.value) out.push(["Expiration", [["Days", days.value]]]);
    else if (markers.checked) out.push(["Expiration", [["ExpiredObjectDeleteMarker", "true"]]]);
    if (noncurrent.value) {
      const nve = [["NoncurrentDays", noncurrent.value]];
      if (keep.value) nve.push(["NewerNoncurrentVersions", keep.value]);
      out.push(["NoncurrentVersionExpiration", nve]);
    }
    if (abort.value) out.push(["AbortIncompleteMultipartUpload", [["DaysAfterInitiation", abort.value]]]);
    return ["Rule", out];
  };
  rulesBox.append(card);
}

export async function lifecyclePanel(panel, bucket) {
  const doc = await getConfig(bucket, "lifecycle");
  const rulesBox = h("div", {});
  for (const rule of doc ? xall(doc, "Rule") : []) ruleCard(rulesBox, rule);
  const form = h("form", { class: "card", "aria-labelledby": "lifecycle-title" },
    h("h2", { id: "lifecycle-title" }, "Lifecycle"),
    h("p", { class: "muted" }, doc
      ? "The server applies these rules in the background (every --lifecycle-interval)."
      : "No lifecycle rules: nothing expires by itself."),
    rulesBox,
    h("div", { class: "row" },
      h("button", { type: "button", class: "ghost", onclick: () => ruleCard(rulesBox, null) }, "Add rule"),
      h("button", { type: "submit" }, "Save lifecycle"),
      doc ? h("button", { type: "button", class: "ghost danger", onclick: () => off() }, "Delete all rules") : null));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const rules = Array.from(rulesBox.children).map((c) => c.collect());
    try {
      if (!rules.length) {
        await s3("DELETE", bucket, null, { params: { lifecycle: true } });
      } else {
        // Rules kept as XML go in as they came; the others are built from the form.
        const built = rules.filter((r) => !r.raw);
        let body = xmlDoc("LifecycleConfiguration", built);
        const raws = rules.filter((r) => r.raw).map((r) => r.raw).join("");
        body = body.replace("</LifecycleConfiguration>", `${raws}</LifecycleConfiguration>`);
        await s3("PUT", bucket, null, { params: { lifecycle: true }, headers: { "Content-Type": "application/xml" }, body });
      }
      toast("Lifecycle saved");
      clear(panel);
      await lifecyclePanel(panel, bucket);
    } catch (err) {
      toast(describe(err), true);
    }
  });
  async function off() {
    try {
      await s3("DELETE", bucket, null, { params: { lifecycle: true } });
      toast("Lifecycle rules deleted");
      clear(panel);
      await lifecyclePanel(panel, bucket);
    } catch (err) {
      toast(describe(err), true);
    }
  }
  panel.append(form);
}
