// The sjdl search page: upload a query image, show its FIRM restoration and the ranked
// gallery matches returned by POST /api/search. Plain DOM code, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;
let current = null; // the last query File, searched again when k changes

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function idText(pid, camid) {
  const id = pid === null ? "id ?" : `id ${pid}`;
  const cam = camid === null ? "cam ?" : `cam ${camid + 1}`;
  return `${id} · ${cam}`;
}

async function loadInfo() {
  try {
    const res = await fetch("/api/info");
    info = await res.json();
    if (!res.ok) throw new Error(info.error || res.statusText);
    const name = info.checkpoint + (info.fingerprint ? ` (${info.fingerprint.slice(0, 12)})` : "");
    $("info").textContent =
      `gallery of ${info.images} images · ${info.dim}-d ${info.kind} index · ` +
      `model ${name}` + (info.firm ? " · with FIRM" : " · no FIRM") +
      (info.bn_images ? ` · BatchNorm statistics of ${info.bn_images} gallery images` : "");
  } catch (err) {
    $("info").textContent = `cannot reach the server: ${err.message}`;
  }
}

function renderResults(data) {
  const list = $("results");
  list.replaceChildren();
  for (const r of data.results) {
    const item = el("li", "card");
    if (r.same_id === true) item.classList.add("same");
    if (r.same_id === false) item.classList.add("other");
    item.dataset.rank = r.rank;
    item.dataset.path = r.path;
    item.dataset.name = r.name;
    const img = el("img");
    img.src = r.thumbnail;
    img.alt = r.name;
    img.title = r.path;
    item.append(el("span", "rank", `#${r.rank}`), img);
    const cap = el("div", "caption");
    cap.append(
      el("span", "name", r.name),
      el("span", "distance", `distance ${r.distance.toFixed(3)}`),
      el("span", "ids", idText(r.pid, r.camid)),
    );
    item.append(cap);
    list.append(item);
  }
  const q = data.query;
  const same = data.results.filter((r) => r.same_id === true).length;
  let text = `${data.results.length} nearest of ${info ? info.images : "?"} gallery images ` +
    `in ${Math.round(data.took_ms)} ms`;
  if (q.pid !== null) text += ` · query ${idText(q.pid, q.camid)}: ${same} shown with the same id (green)`;
  $("status").textContent = text;
}

async function search(file) {
  current = file;
  showError("");
  $("pair").hidden = false;
  $("query").onerror = () => { $("pair").hidden = true; }; // not an image the browser shows
  $("query").src = URL.createObjectURL(file);
  $("query-caption").textContent = `query\n${file.name}`;
  $("restored").hidden = true;
  $("restored-caption").textContent = info && !info.firm
    ? "this model has no FIRM: no restoration" : "FIRM restoration…";
  if (info && file.size > info.max_upload) {
    showError(`the upload is larger than ${info.max_upload / 1048576} MiB; send a smaller image`);
    return;
  }
  $("status").textContent = "searching…";
  const k = $("k").value;
  const url = `/api/search?k=${encodeURIComponent(k)}&name=${encodeURIComponent(file.name)}`;
  let res, data;
  try {
    res = await fetch(url, {
      method: "POST",
      body: file,
      headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    data = await res.json();
  } catch (err) {
    showError(`the search failed: ${err.message}`);
    $("status").textContent = "";
    $("restored-caption").textContent = "";
    return;
  }
  if (!res.ok) {
    showError(data.error || `the search failed (HTTP ${res.status})`);
    $("status").textContent = `${file.name} could not be searched (see the message on the left).`;
    $("results").replaceChildren();
    $("restored-caption").textContent = "";
    return;
  }
  if (data.restored) {
    $("restored").src = data.restored;
    $("restored").hidden = false;
    $("restored-caption").textContent = "FIRM restoration";
  } else if (info && info.firm) {
    $("restored-caption").textContent = "";
  }
  renderResults(data);
}

function setup() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => {
    if (e.target.files.length) search(e.target.files[0]);
  });
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => {
    if (e.dataTransfer.files.length) search(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
  });
  $("k").addEventListener("change", () => { if (current) search(current); });
  loadInfo();
}

document.addEventListener("DOMContentLoaded", setup);
