// lookalike web page: plain JS over the HTTP API (no build step).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { query: null, filters: {}, facets: {}, heads: [], kindColumn: null, text: false, seq: 0 };
const NAME_COLUMNS = ["productDisplayName", "name", "title"];
const KIND_COLUMNS = ["articleType", "class", "subCategory", "category"];
const COLOUR_COLUMNS = ["baseColour", "colour", "color"];
const CONFIDENT = 0.5;     // as lookalike.models.base.CONFIDENT
const CHIPS_SHOWN = 10;

function pick(meta, columns) {
  for (const c of columns) if (meta[c]) return meta[c];
  return "";
}

// A product's title: its name column, else its category (capitalised), else its id.
function title(product) {
  const kind = pick(product.metadata, KIND_COLUMNS);
  return pick(product.metadata, NAME_COLUMNS) || (kind && kind[0].toUpperCase() + kind.slice(1)) || product.id;
}

function params(extra = {}) {
  const p = new URLSearchParams(extra);
  for (const [column, values] of Object.entries(state.filters)) if (values.size) p.set(column, [...values].join(","));
  if (state.kindColumn && $("same-kind").checked) p.set("same", state.kindColumn);
  return p.toString();
}

// The words in the search box ("" when this index does not answer words): any photo or product searched is
// refined by them.
function words() {
  return state.text ? $("words").value.trim().replace(/\s+/g, " ") : "";
}

const quoted = (text) => `“${text}”`;

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    const err = new Error((body && body.detail) || `${response.status} ${response.statusText}`);
    err.status = response.status;
    throw err;
  }
  return body;
}

function setStatus(text) { $("status").textContent = text; }

function showError(message) {
  const box = $("error");
  box.hidden = !message;
  box.textContent = message || "";
}

function skeleton(n = 12) {
  const grid = $("results");
  grid.replaceChildren(...Array.from({ length: n }, () => {
    const li = document.createElement("li");
    li.className = "skeleton";
    li.setAttribute("aria-hidden", "true");
    return li;
  }));
}

function card(product) {
  const li = document.createElement("li");
  li.className = "card";
  const button = document.createElement("button");
  const name = title(product);
  button.setAttribute("aria-label", `${name}: find similar`);
  button.dataset.id = product.id;
  const img = document.createElement("img");
  img.src = product.thumbnail;
  img.alt = name;
  img.loading = "lazy";
  const info = document.createElement("div");
  info.className = "info";
  const heading = document.createElement("span");
  heading.className = "name";
  heading.textContent = name;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = [pick(product.metadata, KIND_COLUMNS), pick(product.metadata, COLOUR_COLUMNS), product.metadata.gender]
    .filter(Boolean).join(" · ");
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = product.id;
  info.append(heading, meta, id);
  if (product.score !== null && product.score !== undefined) {
    const score = document.createElement("div");
    score.className = "score";
    score.title = `similarity ${product.score.toFixed(3)}`;
    const bar = document.createElement("span");
    bar.style.width = `${Math.max(0, Math.min(1, product.score)) * 100}%`;
    score.append(bar);
    info.append(score);
  }
  button.append(img, info);
  button.addEventListener("click", () => searchById(product.id));
  li.append(button);
  return li;
}

// An error replaces what was shown: the last query's card and results would read as the answer to this one.
function fail(message) {
  state.seq++;
  state.query = null;
  hideQuery();
  $("look").hidden = true;
  $("results").replaceChildren();
  setStatus("");
  showError(message);
}

// Words whose search failed (a 400: punctuation only, a language the model cannot read): the photo or product they
// refined stays the query, so that corrected words refine it again; only the results go.
function failWords(message) {
  $("results").replaceChildren();
  $("query-words").hidden = true;
  setStatus("");
  showError(message);
}

function hideQuery() {
  $("query").hidden = true;
  $("query-image").removeAttribute("src");
  $("query-title").textContent = "";
  $("query-words").hidden = true;
  $("query-attributes").replaceChildren();
}

// The query card: a photo or product (`src`) refined by `text` when given, or words alone (no `src`).
function showQuery(src, title, attributes, text = "") {
  $("query").hidden = false;
  $("query").classList.toggle("words-only", !src);
  const img = $("query-image");
  img.hidden = !src;
  if (src) img.src = src; else img.removeAttribute("src");
  $("query-label").textContent = src ? "Searching for items like" : "Results for";
  $("query-title").textContent = title;
  $("query-words").hidden = !(src && text);
  $("query-words-text").textContent = text;
  showAttributes(attributes);
}

function showAttributes(attributes) {
  const list = $("query-attributes");
  list.replaceChildren(...Object.entries(attributes || {}).map(([k, v]) => {
    const li = document.createElement("li");
    const b = document.createElement("b");
    b.textContent = v;
    li.append(`${k}: `, b);
    return li;
  }));
}

function render(data, text) {
  $("empty").hidden = true;
  const grid = $("results");
  grid.replaceChildren(...data.results.map(card));
  const n = data.results.length;
  const found = !state.query || state.query.type === "words" ? `${n} products for ${quoted(text)}`
    : text ? `${n} similar products, refined by ${quoted(text)}` : `${n} similar products`;
  setStatus(n ? `${found} · ${data.took_ms.toFixed(0)} ms` : "No products match these filters.");
}

// One search: `fetcher` gets its answer, `show` (optional) updates the query card from it. An answer that comes
// after a newer search started is dropped, so a slow one never replaces the results of the last.
async function run(fetcher, text = "", show = null) {
  const seq = ++state.seq;
  showError("");
  setStatus("Searching…");
  skeleton();
  try {
    const data = await fetcher();
    if (seq !== state.seq) return;
    if (show) show(data);
    render(data, text);
  } catch (err) {
    if (seq !== state.seq) return;
    // a 400 or 409 with words is about the words, not the photo or product they refine
    const aboutWords = text && state.query && state.query.type !== "words" && (err.status === 400 || err.status === 409);
    if (aboutWords) failWords(err.message); else fail(err.message);
  }
}

function hashFor(query, text) {
  const p = new URLSearchParams(query);
  if (text) p.set("q", text);
  return `#${p.toString().replace(/\+/g, "%20")}`;
}

async function searchByWords(text, push = true) {
  state.query = { type: "words", text };
  $("look").hidden = true;
  const hash = hashFor({}, text);
  if (push && location.hash !== hash) history.pushState(null, "", hash);
  showQuery(null, quoted(text), {});
  await run(() => api(`/api/search?${params({ q: text, k: 24 })}`), text);
}

async function searchById(id, push = true) {
  state.query = { type: "id", id };
  $("look").hidden = true;
  const text = words();
  const hash = hashFor({ id }, text);
  if (push && location.hash !== hash) history.pushState(null, "", hash);
  window.scrollTo({ top: 0, behavior: "smooth" });
  const extra = text ? { k: 24, q: text } : { k: 24 };
  await run(() => api(`/api/products/${encodeURIComponent(id)}/similar?${params(extra)}`), text, (data) => {
    const p = data.query.product;
    const attrs = {};
    for (const c of [...KIND_COLUMNS, ...COLOUR_COLUMNS, "gender"]) if (p.metadata[c]) attrs[c] = p.metadata[c];
    showQuery(p.thumbnail, title(p), attrs, text);
  });
}

const KIND_COLOURS = { top: "#dc267f", bottom: "#2563eb", "one-piece": "#9333ea", footwear: "#ea580c", bag: "#16a34a", product: "#505050" };

function renderLook(data, url) {
  const box = $("look");
  box.hidden = false;
  $("results").replaceChildren();
  const photo = document.createElement("div");
  photo.className = "photo";
  const img = document.createElement("img");
  img.src = url;
  img.alt = "your photo with the garments found";
  photo.append(img);
  const rows = document.createElement("div");
  const [w, h] = data.size;
  for (const g of data.garments) {
    const colour = KIND_COLOURS[g.kind] || "#333";
    const [x0, y0, x1, y1] = g.box;
    const frame = document.createElement("div");
    frame.className = "box";
    frame.style.cssText = `--c:${colour};left:${(100 * x0) / w}%;top:${(100 * y0) / h}%;width:${(100 * (x1 - x0)) / w}%;height:${(100 * (y1 - y0)) / h}%`;
    const tag = document.createElement("span");
    tag.textContent = g.kind;
    frame.append(tag);
    photo.append(frame);
    const section = document.createElement("section");
    section.className = "garment";
    section.style.setProperty("--c", colour);
    const head = document.createElement("h3");
    const dot = document.createElement("span");
    dot.className = "dot";
    const small = document.createElement("small");
    small.textContent = Object.values(g.attributes || {}).map((a) => a.label).join(" · ");
    head.append(dot, g.kind === "product" ? "Whole photo" : g.kind[0].toUpperCase() + g.kind.slice(1), small);
    const grid = document.createElement("ol");
    grid.className = "grid";
    grid.replaceChildren(...g.results.map(card));
    section.append(head, grid);
    if (!g.results.length && g.note) {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = g.note.charAt(0).toUpperCase() + g.note.slice(1);
      section.append(note);
    }
    rows.append(section);
  }
  box.replaceChildren(photo, rows);
  requestAnimationFrame(() => separateTags(photo));
  const n = data.garments.filter((g) => g.kind !== "product").length;
  setStatus(n ? `${n} garment${n > 1 ? "s" : ""} found${data.full_shot ? " · full shot" : ""} · ${data.took_ms.toFixed(0)} ms`
    : `No person found: searched the whole photo · ${data.took_ms.toFixed(0)} ms`);
}

// Boxes that touch put their labels on top of each other (a dress and the top inside it start at the same
// corner): a label that would cover an earlier one moves to its box's bottom corner, then along its edge.
function separateTags(photo) {
  const placed = [];
  const hits = (r) => placed.some((p) => r.left < p.right && p.left < r.right && r.top < p.bottom && p.top < r.bottom);
  for (const tag of photo.querySelectorAll(".box span")) {
    if (hits(tag.getBoundingClientRect())) tag.classList.add("below");
    for (let step = 0; step < 8 && hits(tag.getBoundingClientRect()); step++) {
      tag.style.left = `${tag.offsetLeft + tag.offsetWidth + 4}px`;
    }
    placed.push(tag.getBoundingClientRect());
  }
}

async function lookByFile(file, url) {
  const seq = ++state.seq;
  showError("");
  setStatus("Finding garments…");
  skeleton(8);
  try {
    const form = new FormData();
    form.append("image", file, file.name || "photo.jpg");
    const data = await api("/api/look?k=8", { method: "POST", body: form });
    if (seq === state.seq) renderLook(data, url);
  } catch (err) {
    if (seq === state.seq) fail(err.message);
  }
}

async function searchByFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    fail(`${file.name} is not an image. Choose a JPEG, PNG or WebP photo.`);
    return;
  }
  $("look").hidden = true;
  // the same photo searched again (a filter, new words) keeps its object URL: a new one per search would leak
  const url = state.query && state.query.file === file && state.query.url ? state.query.url : URL.createObjectURL(file);
  if ($("look-mode").checked) {   // shop the look searches each garment by its picture: words do not apply
    state.query = { type: "look", file, url };
    showQuery(url, file.name || "your photo", {});
    $("empty").hidden = true;
    return lookByFile(file, url);
  }
  state.query = { type: "upload", file, url };
  const text = words();
  history.pushState(null, "", "#upload");
  showQuery(url, file.name || "your photo", {}, text);
  await run(async () => {
    const form = new FormData();
    form.append("image", file, file.name || "photo.jpg");
    const data = await api(`/api/search?${params(text ? { k: 24, q: text } : { k: 24 })}`, { method: "POST", body: form });
    if (state.heads.length) classify(file);
    return data;
  }, text);
}

async function classify(file) {
  try {
    const form = new FormData();
    form.append("image", file, file.name || "photo.jpg");
    const data = await api("/api/classify?top=1", { method: "POST", body: form });
    const attrs = {};
    // only what the model is confident of: a wrong confident label ("Watches" for a skirt) is worse than none
    for (const [head, labels] of Object.entries(data.attributes)) {
      if (labels[0].p >= CONFIDENT) attrs[head] = `${labels[0].label} (${Math.round(labels[0].p * 100)}%)`;
    }
    if (state.query && state.query.file === file) showAttributes(attrs);
  } catch (err) { /* predictions are a bonus: search results are already shown */ }
}

async function randomProduct() {
  try {
    const p = await api(`/api/products/random?${params()}`);
    await searchById(p.id);
  } catch (err) {
    fail(err.message);
  }
}

function rerun() {
  if (!state.query || state.query.type === "look") return;
  if (state.query.type === "id") searchById(state.query.id, false);
  else if (state.query.type === "words") {
    const text = words() || state.query.text;   // words typed since, else the ones shown
    searchByWords(text, text !== state.query.text);
  }
  else searchByFile(state.query.file);
}

// The words box: words alone search by words; with a photo or a product as the query, they refine it. The × takes
// the words away: a photo or product is searched again as it is, words alone leave nothing to show.
function setupWords() {
  const box = $("words");
  const clear = $("words-clear");
  const showClear = () => { clear.hidden = !box.value; };
  box.addEventListener("input", showClear);
  $("words-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = words();
    if (!text) {
      setStatus("Type a few words, e.g. “white sneakers”.");
      box.focus();
      return;
    }
    if (matchMedia("(pointer: coarse)").matches) box.blur();   // a phone's keyboard would hide the results
    if (state.query && state.query.type === "id") searchById(state.query.id);
    else if (state.query && state.query.type === "upload") searchByFile(state.query.file);
    else searchByWords(text);
  });
  const clearWords = () => {
    const had = $("query").hidden ? "" : $("query-words-text").textContent;
    box.value = "";
    showClear();
    box.focus();
    if (!state.query) return;
    if (state.query.type === "words") reset();
    else if (had || !$("error").hidden) rerun();
  };
  clear.addEventListener("click", clearWords);
  $("query-words-clear").addEventListener("click", clearWords);
  box.addEventListener("keydown", (e) => { if (e.key === "Escape" && box.value) { e.preventDefault(); clearWords(); } });
}

// Back to the page as first opened: no query, no results.
function reset() {
  state.seq++;
  state.query = null;
  hideQuery();
  showError("");
  setStatus("");
  $("look").hidden = true;
  $("results").replaceChildren();
  $("empty").hidden = false;
  if (location.hash) history.pushState(null, "", location.pathname + location.search);
}

function renderFilters() {
  const box = $("filters");
  box.replaceChildren();
  for (const [column, values] of Object.entries(state.facets)) {
    const section = document.createElement("div");
    section.className = "facet";
    const h = document.createElement("h3");
    h.textContent = column;
    const chips = document.createElement("div");
    chips.className = "chips";
    chips.setAttribute("role", "group");
    chips.setAttribute("aria-label", column);
    const selected = state.filters[column] || new Set();
    values.forEach((v, i) => {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      chip.setAttribute("aria-pressed", selected.has(v.value) ? "true" : "false");
      chip.dataset.column = column;
      chip.dataset.value = v.value;
      chip.append(v.value);
      const n = document.createElement("span");
      n.className = "n";
      n.textContent = v.count;
      chip.append(n);
      if (i >= CHIPS_SHOWN && !selected.has(v.value)) chip.hidden = true;
      chip.addEventListener("click", () => {
        const set = state.filters[column] || (state.filters[column] = new Set());
        if (set.has(v.value)) set.delete(v.value); else set.add(v.value);
        chip.setAttribute("aria-pressed", set.has(v.value) ? "true" : "false");
        rerun();
      });
      chips.append(chip);
    });
    section.append(h, chips);
    if (values.length > CHIPS_SHOWN) {
      const more = document.createElement("button");
      more.type = "button";
      more.className = "more";
      more.textContent = `+ ${values.length - CHIPS_SHOWN} more`;
      more.addEventListener("click", () => { chips.querySelectorAll(".chip[hidden]").forEach((c) => (c.hidden = false)); more.remove(); });
      section.append(more);
    }
    box.append(section);
  }
}

function setupDrop() {
  const drop = $("drop");
  const input = $("file");
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  input.addEventListener("change", () => { searchByFile(input.files[0]); input.value = ""; });
  $("camera-input").addEventListener("change", (e) => { searchByFile(e.target.files[0]); e.target.value = ""; });
  for (const type of ["dragenter", "dragover"]) drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); searchByFile(e.dataTransfer.files[0]); });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData || {}).items || []].find((i) => i.type.startsWith("image/"));
    if (item) searchByFile(item.getAsFile());
  });
}

function setupWebcam() {
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia) || !window.isSecureContext) return;
  const button = $("webcam-button");
  const dialog = $("webcam-dialog");
  const video = $("webcam-video");
  let stream = null;
  button.hidden = false;
  const stop = () => { if (stream) stream.getTracks().forEach((t) => t.stop()); stream = null; dialog.close(); };
  button.addEventListener("click", async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
      video.srcObject = stream;
      dialog.showModal();
    } catch (err) { showError(`Camera not available: ${err.message}`); }
  });
  $("webcam-close").addEventListener("click", stop);
  $("webcam-shoot").addEventListener("click", () => {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => { stop(); searchByFile(new File([blob], "webcam.jpg", { type: "image/jpeg" })); }, "image/jpeg", 0.92);
  });
}

function fromHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const text = state.text ? (p.get("q") || "").trim() : "";
  if (p.get("id") || text) {
    $("words").value = text;
    $("words-clear").hidden = !text;
  }
  if (p.get("id")) searchById(p.get("id"), false);
  else if (text) searchByWords(text, false);
  else if (!location.hash && state.query && state.query.type !== "look") reset();
}

async function init() {
  setupDrop();
  setupWebcam();
  setupWords();
  $("random-button").addEventListener("click", randomProduct);
  $("look-mode").addEventListener("change", () => { if (state.query && state.query.file) searchByFile(state.query.file); });
  $("same-kind").addEventListener("change", rerun);
  window.addEventListener("popstate", fromHash);
  try {
    const [health, facets] = await Promise.all([api("/api/health"), api("/api/facets")]);
    state.heads = health.heads;
    state.text = health.text === true;
    $("words-form").hidden = !state.text;
    $("empty-words").hidden = !state.text;
    $("catalog-info").textContent = `${health.products.toLocaleString()} products`;
    state.facets = Object.fromEntries(Object.entries(facets.columns).map(([c, vs]) => [c, vs]));
    // "same type only" searches within the query's type column, when the catalog has one
    state.kindColumn = KIND_COLUMNS.find((c) => c in state.facets) || null;
    if (state.kindColumn) {
      $("same-column").textContent = state.kindColumn;
      $("same-switch").hidden = false;
    }
    renderFilters();
  } catch (err) {
    showError(`The catalog is not available: ${err.message}`);
  }
  if (/^#(id|q)=/.test(location.hash)) fromHash(); else $("empty").hidden = false;
}

init();
