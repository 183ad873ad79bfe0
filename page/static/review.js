"use strict";
// The review view: GET /api/records (filters), GET /api/records/<id>, POST /api/records/<id>/label. No third-party code.

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("pageToken") || "", chosen: null };

function headers(extra) {
  return { ...(state.token ? { "X-Page-Token": state.token } : {}), ...(extra || {}) };
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function call(url, options) {
  const response = await fetch(url, { ...(options || {}), headers: headers((options || {}).headers) });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    $("token-form").hidden = false;
    throw new Error(body.detail || "a page token is needed");
  }
  if (!response.ok) throw new Error(`${body.error || response.status}: ${body.detail || ""}`);
  return body;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "-" : String(text);
  return td;
}

async function load() {
  showError("");
  const query = new URLSearchParams();
  for (const [key, id] of [["verdict", "f-verdict"], ["declared_ai", "f-declared"], ["labelled", "f-labelled"], ["since", "f-since"]]) {
    if ($(id).value) query.set(key, $(id).value);
  }
  try {
    const body = await call(`/api/records?${query}`);
    $("rows").replaceChildren(...body.records.map((record) => {
      const tr = document.createElement("tr");
      tr.dataset.id = record.id;
      tr.append(cell(record.created_at), cell(record.media || "-"), cell(record.verdict || `${record.status} ${record.error}`),
        cell(record.p_fake === null ? null : record.p_fake.toFixed(3)), cell(record.declared_ai), cell(record.label), cell(record.client));
      tr.addEventListener("click", () => show(record.id));
      return tr;
    }));
    $("empty").hidden = body.records.length > 0;
  } catch (error) {
    showError(error.message);
  }
}

async function show(id) {
  try {
    const record = await call(`/api/records/${encodeURIComponent(id)}`);
    state.chosen = id;
    for (const tr of $("rows").children) tr.classList.toggle("chosen", tr.dataset.id === id);
    $("d-id").textContent = id;
    $("d-summary").textContent = record.status === 200
      ? `${record.media} answered ${record.verdict} (P(fake) ${record.p_fake === null ? "-" : record.p_fake.toFixed(3)}) by ${record.model} ${record.version} ` +
        `on ${record.runtime} ${record.precision}; ${record.subjects} ${record.media === "video" ? "people" : "faces"}` +
        (record.face_search ? ` (searched from ${record.face_search.smallest_face} px, ${record.face_search.detector})` : "") + `; sha256 ${record.sha256}`
      : `refused with ${record.status} ${record.error}; sha256 ${record.sha256 || "-"}`;
    $("d-demo").hidden = !record.demo;
    const provenance = record.provenance;
    $("d-provenance").textContent = provenance ? `Provenance: ${provenance.statement || "-"}` : "Provenance: not read.";
    $("d-match").hidden = !record.match;
    if (record.match) $("d-match").textContent = `Matched record ${record.match.record} labelled ${record.match.label} (${record.match.distance} bits apart).`;
    $("d-history").replaceChildren(...record.labels_history.map((event) => {
      const li = document.createElement("li");
      li.textContent = `${event.created_at} ${event.reviewer}: ${event.label}${event.note ? ` (${event.note})` : ""}`;
      return li;
    }));
    $("d-json").textContent = JSON.stringify(record, null, 2);
    $("detail").hidden = false;
  } catch (error) {
    showError(error.message);
  }
}

async function label(event) {
  event.preventDefault();
  if (!state.chosen) return;
  try {
    await call(`/api/records/${encodeURIComponent(state.chosen)}/label`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label: $("l-label").value, note: $("l-note").value }),
    });
    $("l-note").value = "";
    const id = state.chosen;
    await load();
    await show(id);
  } catch (error) {
    showError(error.message);
  }
}

function wire() {
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); load(); });
  $("label-form").addEventListener("submit", label);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token-input").value;
    sessionStorage.setItem("pageToken", state.token);
    $("token-form").hidden = true;
    load();
  });
  load();
}

document.addEventListener("DOMContentLoaded", wire);
