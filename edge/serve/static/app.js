// care-edge search page: plain JavaScript, no dependencies, talks only to this server's /api/.
// Every text from a document goes into the page through textContent, never as HTML.
"use strict";

const DEBOUNCE_MS = 250;
const SNIPPET_CHARS = 600;
const LANGUAGE_NAMES = { en: "English", zh: "中文", de: "Deutsch", fr: "Français", es: "Español", pt: "Português",
  it: "Italiano" };
// The lexical tokenizer of edge/hybrid.py: Han runs become character bigrams, everything else words.
const HAN = "\\u3400-\\u4dbf\\u4e00-\\u9fff\\uf900-\\ufaff\\u{20000}-\\u{3134f}";
const TOKEN_RE = new RegExp(`([${HAN}]+)|((?:(?![${HAN}])[\\p{L}\\p{N}\\p{M}])+)`, "gu");

const $ = (id) => document.getElementById(id);
const els = { form: $("search-form"), q: $("q"), index: $("index"), mode: $("mode"), status: $("status"),
  results: $("results"), doc: $("doc"), timings: $("timings"), about: $("about") };
let collections = new Map();
let defaultIndex = null;
let pending = null;
let debounce = null;
let lastSearchHash = "";

// ------------------------------------------------------------------------------------------------ state in the URL

function readState() {
  const params = new URLSearchParams(location.hash.slice(1));
  return { q: params.get("q") || "", index: params.get("index") || defaultIndex, mode: params.get("mode") || "",
    doc: params.get("doc") || "" };
}

function hashOf(state) {
  const params = new URLSearchParams();
  if (state.index) params.set("index", state.index);
  if (state.doc) params.set("doc", state.doc);
  else {
    if (state.mode) params.set("mode", state.mode);
    if (state.q) params.set("q", state.q);
  }
  return "#" + params.toString();
}

function formState() {
  const checked = els.mode.querySelector("input:checked");
  return { q: els.q.value.trim(), index: els.index.value, mode: checked ? checked.value : "", doc: "" };
}

// ------------------------------------------------------------------------------------------------ highlighting

function queryTerms(query) {
  const terms = new Set();
  for (const match of query.normalize("NFKC").toLowerCase().matchAll(TOKEN_RE)) {
    if (match[2]) { terms.add(match[2]); continue; }
    const han = [...match[1]];
    if (han.length === 1) terms.add(han[0]);
    for (let i = 0; i + 1 < han.length; i++) terms.add(han[i] + han[i + 1]);
  }
  return [...terms];
}

function termsRegex(query) {
  const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const hanOnly = new RegExp(`^[${HAN}]+$`, "u");
  // A one-letter word ("a", "i") would light up half a page; a single Han character is a word of its own.
  const terms = queryTerms(query).filter((term) => hanOnly.test(term) || term.length > 1);
  const parts = terms.sort((a, b) => b.length - a.length).map((term) =>
    hanOnly.test(term) ? escape(term) : `(?<![\\p{L}\\p{N}])${escape(term)}(?![\\p{L}\\p{N}])`);
  return parts.length ? new RegExp(parts.join("|"), "giu") : null;
}

function appendHighlighted(parent, text, regex) {
  if (!regex) { parent.append(text); return parent; }
  let at = 0;
  for (const match of text.matchAll(regex)) {
    if (!match[0]) continue;
    parent.append(text.slice(at, match.index));
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    parent.append(mark);
    at = match.index + match[0].length;
  }
  parent.append(text.slice(at));
  return parent;
}

function snippet(text, regex) {
  if (text.length <= SNIPPET_CHARS) return text;
  let start = 0;
  if (regex) {
    regex.lastIndex = 0;
    const first = regex.exec(text);
    regex.lastIndex = 0;
    if (first) start = Math.max(0, first.index - 150);
  }
  const cut = text.slice(start, start + SNIPPET_CHARS);
  return (start > 0 ? "… " : "") + cut + (start + SNIPPET_CHARS < text.length ? " …" : "");
}

// ------------------------------------------------------------------------------------------------ small builders

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function docLink(index, id, label) {
  return el("a", { href: hashOf({ index, doc: id }), class: "code" }, label || id);
}

function namesList(names, regex) {
  const list = el("dl", { class: "names" });
  for (const [language, name] of Object.entries(names || {})) {
    list.append(el("dt", { title: LANGUAGE_NAMES[language] || language, text: language }));
    list.append(appendHighlighted(el("dd", { lang: language }), String(name), regex));
  }
  return list;
}

function chapterLine(meta) {
  if (!meta.chapter) return null;
  const number = meta.chapter_number ? ` (${meta.chapter_number})` : "";
  return el("div", { class: "chapter", text: `Chapter ${meta.chapter}${number}` + (meta.active === false ? " · inactive" : "") });
}

function fileHref(index, doc) {
  // A PDF viewer opens at #page=N; the server finds the file from the document id alone.
  const page = Number.isInteger(doc.meta.page) && /\.pdf$/i.test(doc.meta.file) ? `#page=${doc.meta.page}` : "";
  return `/api/file?${new URLSearchParams({ index, id: doc.id })}${page}`;
}

function sourceLine(index, doc) {
  const meta = doc.meta;
  if (typeof meta.file !== "string") {
    return typeof meta.source === "string" ? el("div", { class: "source", text: `source: ${meta.source}` }) : null;
  }
  // A user's own file (`care-edge index`): its path as a link that opens it, then page and headings.
  const line = el("div", { class: "source" });
  line.append(el("a", { href: fileHref(index, doc), target: "_blank", rel: "noopener", text: meta.file }));
  const details = [];
  if (meta.page != null) details.push(`page ${meta.page}`);
  if (Array.isArray(meta.headings) && meta.headings.length) details.push(meta.headings.join(" › "));
  if (Array.isArray(meta.span)) details.push(`characters ${meta.span[0]}–${meta.span[1]}`);
  if (details.length) line.append(" · " + details.join(" · "));
  return line;
}

// ------------------------------------------------------------------------------------------------ rendering

function setStatus(text, isError = false) {
  els.status.textContent = text;
  els.status.classList.toggle("error", isError);
}

function formatTimings(response) {
  const keys = response.mode === "hybrid" ? ["tokenize", "encode", "search", "lexical", "fetch"]
    : ["tokenize", "encode", "search", "fetch"];
  const t = response.timings_ms;
  return keys.map((key) => `${key} ${t[key].toFixed(2)} ms`).join(" | ") + ` | total ${t.total.toFixed(2)} ms`;
}

function renderResults(response, index) {
  const regex = termsRegex(response.query);
  const kind = (collections.get(index) || {}).kind;
  els.results.replaceChildren();
  response.results.forEach((doc, i) => {
    const item = el("li", { "data-id": doc.id });
    const head = el("div", { class: "result-head" }, el("span", { class: "rank", text: `${i + 1}.` }),
      el("span", { class: "score", title: response.mode === "hybrid" ? "fused reciprocal-rank score" : "cosine",
        text: doc.score.toFixed(4) }));
    item.append(head);
    if (kind === "codes" && doc.meta.code) {
      head.append(docLink(index, doc.id, doc.meta.code));
      item.append(namesList(doc.meta.names, regex));
      const chapter = chapterLine(doc.meta);
      if (chapter) item.append(chapter);
    } else {
      head.append(el("span", { class: "doc-id", text: doc.id }));
      item.append(appendHighlighted(el("p", { class: "text" }), snippet(doc.text, regex), regex));
      const source = sourceLine(index, doc);
      if (source) item.append(source);
    }
    els.results.append(item);
  });
  const truncated = response.truncated ? " (query truncated to the encoder's token limit)" : "";
  setStatus(response.results.length
    ? `${response.results.length} results for “${response.query}” in ${index}, ${response.mode}${truncated}`
    : `no results for “${response.query}”`);
  els.timings.textContent = formatTimings(response);
}

async function getJSON(url, signal) {
  const reply = await fetch(url, { signal, headers: { Accept: "application/json" } });
  const body = await reply.json().catch(() => ({ error: `HTTP ${reply.status}` }));
  if (!reply.ok) throw new Error(body.error || `HTTP ${reply.status}`);
  return body;
}

async function runSearch(state) {
  els.doc.hidden = true;
  els.results.hidden = false;
  if (pending) pending.abort();
  if (!state.q) { els.results.replaceChildren(); setStatus(""); return; }
  pending = new AbortController();
  const params = new URLSearchParams({ q: state.q, index: state.index });
  if (state.mode) params.set("mode", state.mode);
  setStatus("searching…");
  try {
    const response = await getJSON(`/api/search?${params}`, pending.signal);
    renderResults(response, state.index);
    lastSearchHash = hashOf(state);
  } catch (error) {
    if (error.name === "AbortError") return;
    els.results.replaceChildren();
    setStatus(error.message, true);
  }
}

async function showDoc(state) {
  if (pending) pending.abort();
  pending = new AbortController();
  els.results.hidden = true;
  els.doc.hidden = false;
  els.doc.replaceChildren(el("p", { text: "loading…" }));
  let body;
  try {
    body = await getJSON(`/api/doc?${new URLSearchParams({ index: state.index, id: state.doc })}`, pending.signal);
  } catch (error) {
    if (error.name === "AbortError") return;
    els.doc.replaceChildren();
    setStatus(error.message, true);
    return;
  }
  const doc = body.document;
  const meta = doc.meta;
  const regex = termsRegex(els.q.value);
  const back = el("a", { href: lastSearchHash || "#", class: "back", text: "← results" });
  const parts = [back];
  if (meta.code) {
    parts.push(el("h2", {}, el("span", { class: "code", text: meta.code }), " ",
      el("span", { lang: "en", text: (meta.names && meta.names.en) || "" })));
    parts.push(namesList(meta.names, regex));
    const chapter = chapterLine(meta);
    if (chapter) parts.push(chapter);
    parts.push(el("h3", { text: "Parent" }));
    parts.push(body.parent
      ? el("p", { class: "parent" }, docLink(body.index, body.parent.id), " ",
        el("span", { lang: "en", text: (body.parent.meta.names || {}).en || body.parent.text }))
      : el("p", { text: "none: this is a category" }));
    parts.push(el("h3", { text: `Children (${body.children.length})` }));
    const list = el("ul", { class: "code-list children" });
    for (const child of body.children) {
      list.append(el("li", {}, docLink(body.index, child.id), " ",
        el("span", { lang: "en", text: (child.meta.names || {}).en || child.text })));
    }
    parts.push(body.children.length ? list : el("p", { text: "none" }));
  } else {
    parts.push(el("h2", { class: "doc-id", text: doc.id }));
    parts.push(appendHighlighted(el("p", { class: "text" }), doc.text, regex));
    const source = sourceLine(body.index, doc);
    if (source) parts.push(source);
  }
  els.doc.replaceChildren(...parts);
  setStatus(`${body.index}: ${doc.id}`);
  (els.doc.querySelector("h2 .code, h2") || els.doc).setAttribute("tabindex", "-1");
  els.doc.querySelector("[tabindex='-1']").focus();
}

// ------------------------------------------------------------------------------------------------ controls

function syncModes(index, wanted) {
  const info = collections.get(index) || { modes: ["dense"], default_mode: "dense" };
  const chosen = wanted && info.modes.includes(wanted) ? wanted : info.default_mode;
  for (const input of els.mode.querySelectorAll("input")) {
    input.disabled = !info.modes.includes(input.value);
    input.checked = input.value === chosen;
    const label = input.parentElement;
    label.dataset.title = label.dataset.title || label.title;
    label.title = input.disabled ? "this collection has no keyword (BM25) table" : label.dataset.title;
  }
}

function applyState(state) {
  if (state.index && collections.has(state.index)) els.index.value = state.index;
  syncModes(els.index.value, state.mode);
  // The box keeps what is typed; a link or Back/Forward that names a query puts it in.
  if (state.q) els.q.value = state.q;
  if (state.doc) showDoc({ ...state, index: els.index.value });
  else runSearch({ ...formState(), q: state.q });
}

function searchFromForm() {
  clearTimeout(debounce);
  const state = formState();
  history.replaceState(null, "", hashOf(state));
  runSearch(state);
}

async function init() {
  let listing;
  try {
    listing = await getJSON("/api/collections");
  } catch (error) {
    setStatus(`cannot list collections: ${error.message}`, true);
    return;
  }
  defaultIndex = listing.default;
  for (const info of listing.collections) {
    collections.set(info.name, info);
    const label = info.available ? `${info.name} · ${info.documents.toLocaleString("en")} docs` : `${info.name} (unavailable)`;
    const option = el("option", { value: info.name, text: label });
    if (!info.available) { option.disabled = true; option.title = info.error; }
    else if (info.description) option.title = info.description;
    els.index.append(option);
  }
  if (defaultIndex) els.index.value = defaultIndex;
  getJSON("/api/health").then((health) => {
    els.about.textContent = `query encoder ${health.query_encoder} · care-edge ${health.version} · offline`;
  }).catch(() => {});
  applyState(readState());
}

els.form.addEventListener("submit", (event) => { event.preventDefault(); searchFromForm(); });
els.q.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(searchFromForm, DEBOUNCE_MS); });
els.index.addEventListener("change", () => { syncModes(els.index.value, ""); searchFromForm(); });
els.mode.addEventListener("change", searchFromForm);
window.addEventListener("hashchange", () => applyState(readState()));
document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (event.key === "/" && !typing) { event.preventDefault(); els.q.focus(); els.q.select(); }
  if (event.key === "Escape" && !els.doc.hidden) { location.hash = lastSearchHash || "#"; }
});
init();
