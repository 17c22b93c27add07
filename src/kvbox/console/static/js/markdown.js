// A small Markdown renderer for previews that builds DOM nodes, never HTML text: an
// object's Markdown can format itself, but cannot inject markup, scripts or styles.
// Covers what READMEs use: headings, paragraphs, lists, block quotes, fenced and inline
// code, emphasis, rules, and links (http, https and mailto only; images become links, as
// the console loads nothing from other hosts).

import { h } from "./dom.js";

const SAFE_LINK = /^(https?:|mailto:)/i;

function inline(text) {
  const out = [];
  const re = /(`[^`]+`)|(\*\*[^*]+\*\*|__[^_]+__)|(\*[^*\s][^*]*\*|_[^_\s][^_]*_)|(!?\[[^\]]*\]\([^)\s]+\))/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    const tok = m[0];
    if (m[1]) out.push(h("code", {}, tok.slice(1, -1)));
    else if (m[2]) out.push(h("strong", {}, inline(tok.slice(2, -2))));
    else if (m[3]) out.push(h("em", {}, inline(tok.slice(1, -1))));
    else {
      const [, label, url] = tok.match(/^!?\[([^\]]*)\]\(([^)\s]+)\)$/);
      out.push(SAFE_LINK.test(url)
        ? h("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, label || url)
        : `${label} (${url})`);
    }
    last = m.index + tok.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

export function renderMarkdown(source) {
  const root = h("div", { class: "markdown" });
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (/^```/.test(line)) {
      const body = [];
      i += 1;
      while (i < lines.length && !/^```/.test(lines[i])) body.push(lines[i++]);
      i += 1;
      root.append(h("pre", {}, h("code", {}, body.join("\n"))));
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (heading) {
      root.append(h(`h${Math.min(6, heading[1].length + 1)}`, {}, inline(heading[2])));
      i += 1;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      root.append(h("hr"));
      i += 1;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const body = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) body.push(lines[i++].replace(/^\s*>\s?/, ""));
      root.append(h("blockquote", {}, renderMarkdown(body.join("\n")).childNodes));
      continue;
    }
    const bullet = /^\s*[-*+]\s+/;
    const numbered = /^\s*\d+[.)]\s+/;
    if (bullet.test(line) || numbered.test(line)) {
      const kind = bullet.test(line) ? bullet : numbered;
      const list = h(kind === bullet ? "ul" : "ol");
      while (i < lines.length && kind.test(lines[i])) list.append(h("li", {}, inline(lines[i++].replace(kind, ""))));
      root.append(list);
      continue;
    }
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !/^(```|#{1,6}\s|\s*>|\s*[-*+]\s|\s*\d+[.)]\s)/.test(lines[i])) para.push(lines[i++]);
    if (!para.length) para.push(lines[i++]);
    root.append(h("p", {}, inline(para.join(" "))));
  }
  return root;
}
