// The console's shell: session bootstrap, the hash router, navigation, theme.
// Routes live in the URL fragment (#/objects?bucket=b&prefix=p/), so the page works
// unchanged under any sub-path a reverse proxy puts it on, and nothing in the fragment is
// ever sent to a server.

import { ApiError, json, onSignedOut, session } from "./api.js";
import { clear, h, toast } from "./dom.js";
import { describe, route } from "./routes.js";
import { renderSignIn } from "./signin.js";

const SCREENS = {
  "": () => import("./dashboard.js"),
  buckets: () => import("./buckets.js"),
  objects: () => import("./objects.js"),
  object: () => import("./object.js"),
  settings: () => import("./settings.js"),
  users: () => import("./users.js"),
  kv: () => import("./kv.js"),
};

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const menuButton = document.getElementById("menu-button");
const who = document.getElementById("who");
const signOutButton = document.getElementById("signout-button");
const themeButton = document.getElementById("theme-button");

let generation = 0;

async function render() {
  const mine = ++generation;
  if (!session.info) {
    showChrome(false);
    renderSignIn(main, async () => {
      showChrome(true);
      await render();
    });
    return;
  }
  const { name, params } = route();
  const load = SCREENS[name];
  markNav(name);
  collapseNav();
  const section = h("section", { "aria-labelledby": "page-title" });
  clear(main, section);
  if (!load) {
    section.append(h("h1", { tabindex: "-1", id: "page-title" }, "Not found"),
      h("p", {}, "There is no such page in the console. ", h("a", { href: "#/" }, "Go to the dashboard.")));
    focusTitle();
    return;
  }
  try {
    const screen = await load();
    if (mine !== generation) return;
    await screen.render(section, params, { alive: () => mine === generation && section.isConnected });
  } catch (err) {
    if (mine !== generation) return;
    if (err instanceof ApiError && err.status === 401) return; // onSignedOut re-renders
    section.append(h("div", { class: "alert", role: "alert" }, describe(err)));
  }
  if (mine === generation) focusTitle();
}

function focusTitle() {
  const title = document.getElementById("page-title");
  if (title && !main.contains(document.activeElement)) title.focus({ preventScroll: false });
}

function markNav(name) {
  for (const a of nav.querySelectorAll("a")) {
    const target = a.getAttribute("href").replace(/^#\/?/, "").split("?")[0];
    const current = target === name
      || (target === "buckets" && ["objects", "object", "settings"].includes(name));
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function showChrome(on) {
  nav.hidden = !on;
  signOutButton.hidden = !on;
  menuButton.hidden = !on;
  const info = session.info;
  who.textContent = on && info ? `${info.principal}${info.root ? " (root)" : ""}` : "";
  for (const el of document.querySelectorAll("[data-root-only]")) el.hidden = !(on && info && info.root);
}

function collapseNav() {
  if (window.matchMedia("(max-width: 760px)").matches) {
    nav.classList.add("collapsed");
    menuButton.setAttribute("aria-expanded", "false");
  } else {
    nav.classList.remove("collapsed");
  }
}

menuButton.addEventListener("click", () => {
  const open = nav.classList.toggle("collapsed") === false;
  menuButton.setAttribute("aria-expanded", String(open));
  if (open) nav.querySelector("a").focus();
});

signOutButton.addEventListener("click", async () => {
  try {
    await json("DELETE", "session");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) toast(describe(err), true);
  }
  session.info = null;
  location.hash = "#/";
  render();
});

// --- theme: the system's unless chosen here (the choice is kept in localStorage; it is
// no secret) --------------------------------------------------------------------------

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
  const dark = theme ? theme === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  themeButton.setAttribute("aria-pressed", String(dark));
  themeButton.textContent = dark ? "Light theme" : "Dark theme";
}

themeButton.addEventListener("click", () => {
  const dark = themeButton.getAttribute("aria-pressed") === "true";
  const next = dark ? "light" : "dark";
  localStorage.setItem("kvbox-theme", next);
  applyTheme(next);
});

applyTheme(localStorage.getItem("kvbox-theme"));

onSignedOut((message) => {
  if (message) toast(message, true);
  render();
});

window.addEventListener("hashchange", render);

async function start() {
  try {
    const info = await json("GET", "session");
    session.info = info.signed_in ? info : null;
    showChrome(Boolean(session.info));
  } catch (err) {
    session.info = null;
    if (!(err instanceof ApiError && err.status === 401)) toast(describe(err), true);
  }
  render();
}

start();
