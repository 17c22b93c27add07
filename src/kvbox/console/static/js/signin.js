// Sign-in: an access key and secret, checked by the S3 door. The secret goes to the
// server once, in this request's body, and is never kept by the page: the form is
// cleared and the server answers with a session cookie the page cannot read.

import { ApiError, json, session } from "./api.js";
import { clear, field, h } from "./dom.js";

export function renderSignIn(main, done) {
  const access = h("input", { type: "text", name: "access_key", autocomplete: "username", required: true, spellcheck: "false", autocapitalize: "off" });
  const secret = h("input", { type: "password", name: "secret_key", autocomplete: "current-password", required: true });
  const error = h("div", { class: "alert", role: "alert", hidden: true });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "card", novalidate: true },
    field("Access key", access),
    field("Secret key", secret, "Your key's secret, as `kvbox admin key add` printed it."),
    error,
    submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    if (!access.value.trim() || !secret.value) {
      error.textContent = "Enter both the access key and the secret key.";
      error.hidden = false;
      (access.value.trim() ? secret : access).focus();
      return;
    }
    submit.disabled = true;
    try {
      session.info = await json("POST", "session", { access_key: access.value.trim(), secret_key: secret.value });
      secret.value = "";
      await done();
    } catch (err) {
      error.textContent = err instanceof ApiError ? err.message : String(err);
      error.hidden = false;
      secret.value = "";
      secret.focus();
    } finally {
      submit.disabled = false;
    }
  });
  clear(main, h("div", { class: "signin" },
    h("h1", { tabindex: "-1", id: "page-title" }, "Sign in to kvbox"),
    h("p", { class: "muted" }, "Use an S3 access key. You can do here exactly what the key can do through the S3 API."),
    form));
  access.focus();
}
