// Users and access keys: the `kvbox admin` commands, run through the S3 door's admin API
// (root only -- the door refuses anyone else, whatever this page shows). A new secret is
// shown once, with a copy button, and is gone from the page when the dialog closes.

import { ApiError, admin } from "./api.js";
import { clear, confirm, copyText, dialog, field, h, heading, toast, when } from "./dom.js";
import { describe } from "./routes.js";

function rows(lines) {
  return lines.filter(Boolean).map((line) => line.split("\t"));
}

async function showSecret(lines, title) {
  const get = (label) => {
    const line = lines.find((l) => l.startsWith(`${label}:`));
    return line ? line.slice(label.length + 1).trim() : "";
  };
  const access = get("access key");
  const secret = get("secret key");
  await dialog(title, h("div", {},
    h("p", {}, "Copy the secret key now: it is shown only this once and kvbox cannot show it again."),
    h("p", {}, h("strong", {}, "Access key")),
    h("div", { class: "secret" }, h("code", { id: "new-access-key" }, access),
      h("button", { type: "button", class: "small", onclick: () => copyText(access, "Access key copied") }, "Copy access key")),
    h("p", {}, h("strong", {}, "Secret key")),
    h("div", { class: "secret" }, h("code", { id: "new-secret-key" }, secret),
      h("button", { type: "button", class: "small", onclick: () => copyText(secret, "Secret key copied") }, "Copy secret key"))),
  [["Done", "done", ""]]);
}

export async function render(root, params, ctx) {
  root.append(heading("Users and keys"));
  const area = h("div", {});
  let users;
  try {
    users = rows(await admin("user", "list"));
  } catch (err) {
    const msg = err instanceof ApiError && err.status === 403
      ? "Only root manages users and access keys (as `kvbox admin` does); the server refused this request."
      : describe(err);
    root.append(h("div", { class: "alert", role: "alert" }, msg));
    return;
  }
  const name = h("input", { type: "text", autocomplete: "off", spellcheck: "false", autocapitalize: "off" });
  const form = h("form", { class: "card" }, h("h2", {}, "Add a user"),
    field("User name", name, "Up to 64 letters, digits and _.@+=,-"), h("button", { type: "submit" }, "Add user"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await admin("user", "add", name.value.trim());
      toast(`User ${name.value.trim()} added`);
      name.value = "";
      await load();
    } catch (err) {
      toast(describe(err), true);
    }
  });
  root.append(form, area);

  async function load() {
    users = rows(await admin("user", "list"));
    if (!ctx.alive()) return;
    if (!users.length) {
      clear(area, h("p", { class: "empty" }, "No users yet. Root's own key comes from the server's start-up."));
      return;
    }
    clear(area, ...await Promise.all(users.map(userCard)));
  }

  async function userCard([user, state, created]) {
    const disabled = state === "disabled";
    const keys = rows(await admin("key", "list", user));
    const keyRows = keys.map(([ak, kstate, kcreated]) => h("tr", { dataset: { key: ak } },
      h("td", { class: "mono" }, ak),
      h("td", {}, kstate === "disabled" ? h("span", { class: "badge danger" }, "disabled") : h("span", { class: "badge accent" }, "enabled")),
      h("td", { class: "hide-narrow nowrap" }, when(kcreated)),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "ghost small", onclick: () => act("key", kstate === "disabled" ? "enable" : "disable", ak) }, kstate === "disabled" ? "Enable" : "Disable"),
        " ",
        h("button", { type: "button", class: "ghost small", onclick: () => rotate(ak) }, "Rotate"),
        " ",
        h("button", { type: "button", class: "ghost danger small", onclick: () => removeKey(ak) }, "Delete"))));
    return h("section", { class: "card", "aria-label": `User ${user}`, dataset: { user } },
      h("h2", {}, user, " ", disabled ? h("span", { class: "badge danger" }, "disabled") : null),
      h("p", { class: "muted" }, `Created ${when(created)}`),
      h("div", { class: "row" },
        h("button", { type: "button", onclick: () => addKey(user) }, "Add access key"),
        h("button", { type: "button", class: "ghost", onclick: () => act("user", disabled ? "enable" : "disable", user) }, disabled ? "Enable user" : "Disable user"),
        h("button", { type: "button", class: "ghost danger", onclick: () => removeUser(user) }, "Delete user")),
      keys.length
        ? h("div", { class: "table-wrap" }, h("table", {},
          h("caption", { class: "hidden" }, `Access keys of ${user}`),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Access key"), h("th", { scope: "col" }, "State"),
            h("th", { scope: "col", class: "hide-narrow" }, "Created"), h("th", { scope: "col" }, "Actions"))),
          h("tbody", {}, keyRows)))
        : h("p", { class: "muted" }, "No access keys."));
  }

  async function act(noun, verb, target) {
    try {
      const lines = await admin(noun, verb, target);
      toast(lines.join(" "));
      await load();
    } catch (err) {
      toast(describe(err), true);
    }
  }

  async function addKey(user) {
    try {
      await showSecret(await admin("key", "add", user), `New access key for ${user}`);
      await load();
    } catch (err) {
      toast(describe(err), true);
    }
  }

  async function rotate(ak) {
    if (!(await confirm("Rotate this key?", "A new key is made and shown once; the old key is disabled (delete it once nothing uses it).", "Rotate", ""))) return;
    try {
      await showSecret(await admin("key", "rotate", ak), "The new access key");
      await load();
    } catch (err) {
      toast(describe(err), true);
    }
  }

  async function removeKey(ak) {
    if (!(await confirm("Delete this access key?", `${ak} stops working at once, for the S3 API and this console.`))) return;
    await act("key", "delete", ak);
  }

  async function removeUser(user) {
    if (!(await confirm(`Delete user ${user}?`, "The user and all its keys are deleted. A user who still owns buckets cannot be deleted."))) return;
    await act("user", "delete", user);
  }

  await load();
}
