// The bucket policy editor: a JSON editor with line numbers, checked as you type by the
// server's own validator (the one PutBucketPolicy runs) with the error shown at its line;
// presets for the common cases; and beside it the explainer -- is this principal allowed
// this action on this key, and which statement decides -- from the S3 door's
// /_kvbox/policy/explain, the same decision a real request gets.

import { ApiError, errorOf, json, request, s3, session } from "./api.js";
import { clear, field, h, prompt, toast } from "./dom.js";
import { describe } from "./routes.js";

const ARN = "arn:aws:s3:::";
const ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:GetObjectVersion",
  "s3:ListBucketVersions", "s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:GetObjectTagging", "s3:PutObjectTagging"];

function doc(statements) {
  return JSON.stringify({ Version: "2012-10-17", Statement: statements }, null, 2);
}

const PRESETS = {
  private: {
    label: "Private (no policy)",
    make: async () => "",
  },
  "public-read": {
    label: "Public read",
    make: async (b) => doc([{ Sid: "PublicRead", Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: `${ARN}${b}/*` }]),
  },
  "public-read-prefix": {
    label: "Public read of a prefix",
    make: async (b) => {
      const p = await prompt("Public read of a prefix", "Prefix", "Objects whose keys start with this are readable by anyone, e.g. public/");
      if (p === null) return null;
      return doc([{ Sid: "PublicReadPrefix", Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: `${ARN}${b}/${p}*` }]);
    },
  },
  "user-read": {
    label: "Read for one user",
    make: async (b) => {
      const u = await prompt("Read for one user", "User name", "This kvbox user may list the bucket and read every object");
      if (!u) return null;
      return doc([{ Sid: `ReadFor${u.replace(/[^A-Za-z0-9]/g, "")}`, Effect: "Allow", Principal: { AWS: u }, Action: ["s3:GetObject", "s3:ListBucket"], Resource: [`${ARN}${b}`, `${ARN}${b}/*`] }]);
    },
  },
};

export async function policyPanel(bucket, ctx) {
  let stored = "";
  try {
    const resp = await s3("GET", bucket, null, { params: { policy: true } });
    stored = await resp.text();
    try {
      stored = JSON.stringify(JSON.parse(stored), null, 2);
    } catch { /* keep the text as stored */ }
  } catch (err) {
    if (!(err instanceof ApiError && err.code === "NoSuchBucketPolicy")) throw err;
  }

  // --- the editor ------------------------------------------------------------------------
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const area = h("textarea", { id: "policy-text", spellcheck: "false", autocomplete: "off", rows: 18, "aria-describedby": "policy-status", wrap: "off" });
  area.value = stored;
  const statusLine = h("p", { id: "policy-status", role: "status" });
  let bad = 0;
  const numbers = () => {
    const n = Math.max(1, area.value.split("\n").length);
    clear(gutter, Array.from({ length: n }, (_, i) => [i + 1 === bad ? h("span", { class: "bad" }, String(i + 1)) : String(i + 1), "\n"]));
    gutter.scrollTop = area.scrollTop;
  };
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });

  let timer = null;
  let seq = 0;
  async function validate() {
    const mine = ++seq;
    if (!area.value.trim()) {
      bad = 0;
      area.removeAttribute("aria-invalid");
      statusLine.className = "muted";
      statusLine.textContent = "No policy: only the owner and root have access (plus any ACL grants).";
      numbers();
      return true;
    }
    const r = await json("POST", "policy/validate", { bucket, policy: area.value });
    if (mine !== seq) return r.ok;
    if (r.ok) {
      bad = 0;
      area.removeAttribute("aria-invalid");
      statusLine.className = "ok";
      statusLine.textContent = `Valid: ${r.statements} statement${r.statements === 1 ? "" : "s"}.${r.public ? " This policy makes the bucket public." : ""}`;
    } else {
      bad = r.line || 0;
      area.setAttribute("aria-invalid", "true");
      statusLine.className = "error-text";
      statusLine.textContent = `${r.line ? `Line ${r.line}: ` : ""}${r.message}`;
    }
    numbers();
    return r.ok;
  }
  area.addEventListener("input", () => {
    numbers();
    clearTimeout(timer);
    timer = setTimeout(() => { if (ctx.alive()) validate().catch(() => {}); }, 400);
  });

  const presetSelect = h("select", { id: "policy-preset" },
    h("option", { value: "" }, "Choose a preset…"),
    Object.entries(PRESETS).map(([k, p]) => h("option", { value: k }, p.label)));
  const applyPreset = async () => {
    const p = PRESETS[presetSelect.value];
    if (!p) return;
    const text = await p.make(bucket);
    if (text === null) return;
    area.value = text;
    numbers();
    await validate();
    area.focus();
  };

  const form = h("form", { class: "card", "aria-labelledby": "policy-title" },
    h("h2", { id: "policy-title" }, "Bucket policy"),
    h("div", { class: "row" }, h("label", { for: "policy-preset" }, "Preset"), presetSelect,
      h("button", { type: "button", class: "ghost", onclick: applyPreset }, "Use preset")),
    h("label", { for: "policy-text" }, "Policy (JSON)"),
    h("div", { class: "editor" }, gutter, area),
    statusLine,
    h("div", { class: "row" },
      h("button", { type: "submit" }, "Save policy"),
      stored ? h("button", { type: "button", class: "ghost danger", onclick: () => removePolicy() }, "Delete policy") : null));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      if (!area.value.trim()) {
        await removePolicy();
        return;
      }
      if (!(await validate())) {
        area.focus();
        return;
      }
      await s3("PUT", bucket, null, { params: { policy: true }, headers: { "Content-Type": "application/json" }, body: area.value });
      stored = area.value;
      toast("Policy saved");
    } catch (err) {
      // e.g. AccessDenied when Block Public Access refuses a public policy
      statusLine.className = "error-text";
      statusLine.textContent = describe(err);
      toast(describe(err), true);
    }
  });
  async function removePolicy() {
    try {
      await s3("DELETE", bucket, null, { params: { policy: true } });
      stored = "";
      area.value = "";
      await validate();
      toast("Policy deleted");
    } catch (err) {
      toast(describe(err), true);
    }
  }
  numbers();
  if (stored) validate().catch(() => {});
  else statusLine.textContent = "No policy: only the owner and root have access (plus any ACL grants).";

  return h("div", { class: "split" }, form, explainer(bucket));
}

// --- the explainer -----------------------------------------------------------------------

function explainer(bucket) {
  const principal = h("input", { type: "text", value: "anonymous", autocomplete: "off", spellcheck: "false" });
  const action = h("input", { type: "text", value: "s3:GetObject", list: "policy-actions", autocomplete: "off", spellcheck: "false" });
  const key = h("input", { type: "text", autocomplete: "off", spellcheck: "false" });
  const out = h("div", { id: "explain-result", "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-labelledby": "explain-title" },
    h("h2", { id: "explain-title" }, "Explain a decision"),
    h("p", { class: "muted" }, "Would this request be allowed by the saved settings, and which statement decides?"),
    field("Principal", principal, "A user name, root, or anonymous"),
    field("Action", action),
    h("datalist", { id: "policy-actions" }, ACTIONS.map((a) => h("option", { value: a }))),
    field("Key", key, "Empty for a bucket action such as s3:ListBucket"),
    h("button", { type: "submit" }, "Explain"), out);
  if (session.info && !session.info.root) {
    form.append(h("p", { class: "muted" }, "The explainer is root's, as `kvbox policy explain --server` is; the server refuses it to other users."));
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const resource = `${ARN}${bucket}${key.value ? `/${key.value}` : ""}`;
    try {
      const resp = await request("POST", "s3/_kvbox/policy/explain", {
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ principal: principal.value.trim() || "anonymous", action: action.value.trim(), resource }),
      });
      if (!resp.ok) {
        const e = await errorOf(resp);
        throw new ApiError(resp.status, e.code, e.message);
      }
      const r = await resp.json();
      if (r.error) throw new ApiError(400, "", r.error);
      const st = r.statement;
      clear(out,
        h("p", { class: r.allowed ? "ok" : "error-text" }, h("strong", { id: "explain-verdict" }, r.allowed ? "ALLOWED" : "DENIED"),
          ` — decided by ${r.decided_by}`),
        h("p", {}, r.reason),
        st ? h("div", {}, h("p", {}, `Statement #${st.index}${st.sid ? ` (Sid "${st.sid}")` : ""}, ${st.effect}:`),
          h("pre", {}, JSON.stringify(st.json, null, 2))) : null,
        r.trace && r.trace.length ? h("details", {}, h("summary", {}, "Every statement"), h("ul", {}, r.trace.map((t) => h("li", {}, t)))) : null);
    } catch (err) {
      clear(out, h("div", { class: "alert", role: "alert" }, describe(err)));
    }
  });
  return form;
}
