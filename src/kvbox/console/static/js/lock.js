// Object lock, where the S3 API has it: a bucket's object-lock configuration (enabled,
// and a default retention) and one object version's retention and legal hold. Every
// rule -- what a lock forbids, who may bypass a governance retention -- is the S3
// door's; the page only shows the settings and what the door answered.

import { ApiError, s3, s3xml, xmlDoc, xtext } from "./api.js";
import { check, clear, field, h, toast, when } from "./dom.js";
import { describe } from "./routes.js";

// The bucket's configuration, or null when it has none (ObjectLockConfigurationNotFoundError).
export async function lockConfig(bucket) {
  try {
    return await s3xml("GET", bucket, null, { params: { "object-lock": true } });
  } catch (err) {
    if (err instanceof ApiError && err.code === "ObjectLockConfigurationNotFoundError") return null;
    throw err;
  }
}

function toLocal(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

// --- the bucket's tab ----------------------------------------------------------------------

export async function bucketLockPanel(panel, bucket) {
  const doc = await lockConfig(bucket);
  const enabled = doc !== null && xtext(doc, "ObjectLockEnabled") === "Enabled";
  const mode = h("select", {},
    h("option", { value: "" }, "No default retention"),
    h("option", { value: "GOVERNANCE" }, "Governance: users with s3:BypassGovernanceRetention may shorten or remove it"),
    h("option", { value: "COMPLIANCE" }, "Compliance: nobody, root included, may shorten or remove it"));
  const period = h("input", { type: "number", min: "1", step: "1" });
  const unit = h("select", { "aria-label": "Unit of the retention period" },
    h("option", { value: "Days" }, "days"), h("option", { value: "Years" }, "years"));
  if (doc) {
    mode.value = xtext(doc, "Mode");
    const days = xtext(doc, "Days");
    const years = xtext(doc, "Years");
    period.value = days || years;
    unit.value = years ? "Years" : "Days";
  }
  const form = h("form", { class: "card", "aria-labelledby": "lock-title" },
    h("h2", { id: "lock-title" }, "Object lock"),
    h("p", { id: "lock-state" }, enabled
      ? "Object lock is enabled: object versions can be locked against deletion and overwriting of that version. It cannot be turned off."
      : "Object lock is off. Turning it on needs versioning enabled, and cannot be undone."),
    enabled ? null : h("p", { class: "warn" }, "Once on, a version under compliance retention cannot be deleted by anyone until its date passes."),
    field("Default retention for new objects", mode),
    h("div", { class: "row" }, field("Retention period", period), unit),
    h("button", { type: "submit" }, enabled ? "Save object lock" : "Enable object lock"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const content = [["ObjectLockEnabled", "Enabled"]];
    if (mode.value) {
      if (!period.value) {
        toast("A default retention needs a period", true);
        period.focus();
        return;
      }
      content.push(["Rule", [["DefaultRetention", [["Mode", mode.value], [unit.value, period.value]]]]]);
    }
    try {
      await s3("PUT", bucket, null, { params: { "object-lock": true }, headers: { "Content-Type": "application/xml" }, body: xmlDoc("ObjectLockConfiguration", content) });
      toast("Object lock saved");
      clear(panel);
      await bucketLockPanel(panel, bucket);
    } catch (err) {
      toast(describe(err), true);
    }
  });
  panel.append(form);
}

// --- one version ---------------------------------------------------------------------------

// The retention and legal hold of one object version (in a bucket with object lock), or
// null when the bucket has none or the user may not see its configuration.
export async function objectLockSection(bucket, key, versionId) {
  let conf;
  try {
    conf = await lockConfig(bucket);
  } catch {
    return null;
  }
  if (conf === null) return null;
  const q = versionId ? { versionId } : {};
  const box = h("section", { class: "card", "aria-labelledby": "object-lock-title" },
    h("h2", { id: "object-lock-title" }, "Object lock"));
  const state = h("div", { id: "object-lock-state" });
  box.append(state);

  let retention = null;
  let hold = "OFF";
  try {
    const r = await s3xml("GET", bucket, key, { params: { retention: true, ...q } });
    retention = { mode: xtext(r, "Mode"), until: xtext(r, "RetainUntilDate") };
  } catch (err) {
    if (!(err instanceof ApiError && err.code === "NoSuchObjectLockConfiguration")) {
      state.append(h("p", { class: "muted" }, describe(err)));
    }
  }
  try {
    const l = await s3xml("GET", bucket, key, { params: { "legal-hold": true, ...q } });
    hold = xtext(l, "Status") || "OFF";
  } catch (err) {
    if (!(err instanceof ApiError && err.code === "NoSuchObjectLockConfiguration")) {
      state.append(h("p", { class: "muted" }, describe(err)));
    }
  }
  state.append(
    h("p", {}, retention
      ? [h("strong", {}, retention.mode === "COMPLIANCE" ? "Compliance" : "Governance"), ` retention until ${when(retention.until)}.`]
      : "No retention."),
    h("p", {}, "Legal hold: ", h("strong", {}, hold === "ON" ? "on" : "off"), "."));

  const mode = h("select", {}, h("option", { value: "GOVERNANCE" }, "Governance"), h("option", { value: "COMPLIANCE" }, "Compliance"));
  const until = h("input", { type: "datetime-local" });
  if (retention) {
    mode.value = retention.mode;
    until.value = toLocal(new Date(retention.until));
  }
  const bypass = h("input", { type: "checkbox" });
  const retForm = h("form", { class: "row" },
    field("Retention mode", mode), field("Retain until", until),
    check("Bypass governance retention", bypass, "needs s3:BypassGovernanceRetention; lets a governance retention be shortened or removed"),
    h("button", { type: "submit" }, "Save retention"),
    retention && retention.mode === "GOVERNANCE" ? h("button", { type: "button", class: "ghost danger", onclick: () => putRetention(null) }, "Remove retention") : null);
  retForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!until.value) {
      toast("Choose the date until which the version is kept", true);
      until.focus();
      return;
    }
    await putRetention({ mode: mode.value, until: new Date(until.value).toISOString() });
  });
  async function putRetention(r) {
    const body = r
      ? xmlDoc("Retention", [["Mode", r.mode], ["RetainUntilDate", r.until]])
      : xmlDoc("Retention", []);
    const headers = { "Content-Type": "application/xml" };
    if (bypass.checked || !r) headers["x-amz-bypass-governance-retention"] = "true";
    try {
      await s3("PUT", bucket, key, { params: { retention: true, ...q }, headers, body });
      toast(r ? "Retention saved" : "Retention removed");
      box.replaceWith(await objectLockSection(bucket, key, versionId));
    } catch (err) {
      toast(describe(err), true);
    }
  }
  const holdButton = h("button", { type: "button", class: "ghost", onclick: async () => {
    const next = hold === "ON" ? "OFF" : "ON";
    try {
      await s3("PUT", bucket, key, { params: { "legal-hold": true, ...q }, headers: { "Content-Type": "application/xml" }, body: xmlDoc("LegalHold", [["Status", next]]) });
      toast(`Legal hold ${next === "ON" ? "placed" : "removed"}`);
      box.replaceWith(await objectLockSection(bucket, key, versionId));
    } catch (err) {
      toast(describe(err), true);
    }
  } }, hold === "ON" ? "Remove legal hold" : "Place legal hold");
  box.append(retForm, h("div", { class: "row" }, holdButton));
  return box;
}
