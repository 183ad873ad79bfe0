"use strict";
// The review queue: GET /api/records (filters, paging), /api/records/<id>, /api/records/<id>/media/<n>,
// /api/records/counts, /api/records/agreement; POST /api/records/<id>/label. No third-party code.

const $ = (id) => document.getElementById(id);
const FILTERS = [["verdict", "f-verdict"], ["declared_ai", "f-declared"], ["labelled", "f-labelled"], ["since", "f-since"],
  ["version", "f-version"], ["client", "f-client"]];
const KEY_LABELS = { r: "real", f: "fake", u: "unsure" };
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#7c6cff", "#39d98a", "#ffc145", "#ff5c7a", "#5cc8ff", "#d68cff"];
const state = {
  token: sessionStorage.getItem("pageToken") || "", chosen: null, rows: [], offset: 0, limit: 20, total: 0,
  labelledHere: 0, busy: false,
};
const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

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

function element(tag, text, className) {
  const made = document.createElement(tag);
  if (text !== undefined) made.textContent = text === null ? "-" : String(text);
  if (className) made.className = className;
  return made;
}

function time(iso) {
  const shown = element("time", iso ? when.format(new Date(iso)) : "-");
  if (iso) { shown.dateTime = iso; shown.title = `${iso} (UTC)`; }
  return shown;
}

function mediaUrl(id, position) {
  return `/api/records/${encodeURIComponent(id)}/media/${position}`;
}

function fixed(value) {
  return value === null || value === undefined ? "-" : value.toFixed(3);
}

function row(record) {
  const tr = document.createElement("tr");
  tr.dataset.id = record.id;
  const picture = element("td");
  if (record.thumbnail !== null && record.thumbnail !== undefined) {
    const img = element("img");
    img.src = mediaUrl(record.id, record.thumbnail);
    img.alt = "";
    img.loading = "lazy";
    picture.append(img);
  }
  const timeCell = element("td");
  timeCell.append(time(record.created_at));
  const verdict = element("td", record.verdict || `${record.status} ${record.error}`, record.verdict ? `v-${record.verdict}` : "");
  tr.append(picture, timeCell, verdict, element("td", fixed(record.p_fake)), element("td", record.label, "label"), element("td", record.client));
  tr.addEventListener("click", () => show(record.id));
  return tr;
}

function defaultOf(field) {
  if (field.tagName !== "SELECT") return field.defaultValue;
  const chosen = [...field.options].find((o) => o.defaultSelected) || field.options[0];
  return chosen ? chosen.value : "";
}

function query(extra) {
  // A filter is written when set, and also when emptied against a default ("any" labelled is labelled=):
  // a reload must not fall back to the form's default.
  const params = new URLSearchParams();
  for (const [key, id] of FILTERS) {
    const value = $(id).value.trim();
    if (value || value !== defaultOf($(id))) params.set(key, value);
  }
  for (const [key, value] of Object.entries(extra || {})) params.set(key, value);
  return params;
}

async function load(offset, open) {
  showError("");
  state.offset = Math.max(0, offset);
  try {
    const body = await call(`/api/records?${query({ limit: state.limit, offset: state.offset })}`);
    if (!body.records.length && state.offset > 0 && body.total > 0) return load(Math.max(0, body.total - state.limit), open);
    state.rows = body.records;
    state.total = body.total;
    state.labelledHere = 0;
    $("rows").replaceChildren(...body.records.map(row));
    $("empty").hidden = body.records.length > 0;
    if (!body.records.length) unchoose();  // no record in the list: none may be labelled by key
    const first = body.records.length ? state.offset + 1 : 0;
    $("page-range").textContent = `${first}\u2013${state.offset + body.records.length} of ${body.total}`;
    $("prev").disabled = state.offset === 0;
    $("next").disabled = state.offset + body.records.length >= body.total;
    history.replaceState(null, "", `?${query(state.limit === 20 ? {} : { limit: state.limit })}`);
    if (open === "first" && body.records.length) await show(body.records[0].id);
    if (open === "last" && body.records.length) await show(body.records[body.records.length - 1].id);
  } catch (error) {
    showError(error.message);
  }
}

function summary(record) {
  if (record.status !== 200) return `refused with ${record.status} ${record.error}; sha256 ${record.sha256 || "-"}`;
  return `${record.media} answered ${record.verdict} (P(fake) ${fixed(record.p_fake)}) by ${record.model} ${record.version} ` +
    `on ${record.runtime} ${record.precision}; ${record.subjects} ${record.media === "video" ? "people" : "faces"}` +
    (record.face_search ? ` (searched from ${record.face_search.smallest_face} px, ${record.face_search.detector})` : "") +
    `; sha256 ${record.sha256}`;
}

function crop(id, kept, noun) {
  const li = element("li");
  const img = element("img");
  img.src = mediaUrl(id, kept.position);
  const subject = kept.subject === null ? "the whole picture" : `${noun} ${kept.subject + 1}`;
  img.alt = `${subject} as the model saw it`;
  const box = kept.box ? `box ${kept.box[0]},${kept.box[1]} ${kept.box[2]}\u00d7${kept.box[3]}` : "whole picture";
  li.append(img, element("div", `${subject}: ${kept.verdict || "-"}`, `v-${kept.verdict}`),
    element("div", `P(fake) ${fixed(kept.p_fake)}`), element("div", box, "meta"));
  if (kept.time !== null && kept.time !== undefined) li.append(element("div", `at ${kept.time.toFixed(2)} s`, "meta"));
  return li;
}

function showMedia(record) {
  const kept = record.kept_media || [];
  const thumbnail = kept.find((m) => m.kind === "thumbnail");
  $("d-thumb").hidden = !thumbnail;
  if (thumbnail) $("d-thumb").src = mediaUrl(record.id, thumbnail.position);
  else $("d-thumb").removeAttribute("src");
  $("d-crops").replaceChildren(...kept.filter((m) => m.kind === "crop").map((m) => crop(record.id, m, record.media === "video" ? "person" : "face")));
  $("d-no-media").hidden = kept.length > 0;
}

function unchoose() {
  state.chosen = null;
  state.showing = null;
  $("detail").hidden = true;
}

async function show(id) {
  state.showing = id;
  try {
    const record = await call(`/api/records/${encodeURIComponent(id)}`);
    if (state.showing !== id) return;  // another record was asked for meanwhile
    state.chosen = id;
    for (const tr of $("rows").children) tr.classList.toggle("chosen", tr.dataset.id === id);
    $("d-id").textContent = id;
    $("d-summary").textContent = summary(record);
    $("d-demo").hidden = !record.demo;
    $("d-time").replaceChildren("Answered ", time(record.created_at), record.client ? ` for ${record.client}` : "");
    showMedia(record);
    const provenance = record.provenance;
    $("d-provenance").textContent = provenance ? `Provenance: ${provenance.statement || "-"}` : "Provenance: not read.";
    $("d-match").hidden = !record.match;
    if (record.match) $("d-match").textContent = `Matched record ${record.match.record} labelled ${record.match.label} (${record.match.distance} bits apart).`;
    $("d-history").replaceChildren(...record.labels_history.map((event) => {
      const li = element("li");
      li.append(time(event.created_at), ` ${event.reviewer}: ${event.label}${event.note ? ` (${event.note})` : ""}`);
      return li;
    }));
    $("d-json").textContent = JSON.stringify(record, null, 2);
    $("detail").hidden = false;
  } catch (error) {
    showError(error.message);
  }
}

function nextOffset() {
  // Records labelled here have left a "not yet labelled" list: the next page starts that many earlier.
  return state.offset + state.limit - ($("f-labelled").value === "false" ? state.labelledHere : 0);
}

async function move(step) {
  const at = state.rows.findIndex((r) => r.id === state.chosen);
  const to = at + step;
  if (to >= 0 && to < state.rows.length) return show(state.rows[to].id);
  if (step > 0 && state.offset + state.rows.length < state.total) return load(nextOffset(), "first");
  if (step < 0 && state.offset > 0) return load(state.offset - state.limit, "last");
  return null;
}

async function saveLabel(value) {
  const id = state.chosen;
  const note = $("l-note").value.trim();
  await call(`/api/records/${encodeURIComponent(id)}/label`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ label: value, note: note || null }),
  });
  $("l-note").value = "";
  const tr = [...$("rows").children].find((r) => r.dataset.id === id);
  if (tr && !tr.querySelector(".label").textContent.match(/^(real|fake|unsure)$/)) state.labelledHere += 1;
  if (tr) tr.querySelector(".label").textContent = value;
  refreshCounts();  // cheap sums; the chart waits for the next load or filter change
  return id;
}

async function label(event) {
  event.preventDefault();
  if (!state.chosen) return;
  try {
    const id = await saveLabel($("l-label").value);
    await show(id);
  } catch (error) {
    showError(error.message);
  }
}

async function byKey(event) {
  const target = event.target;
  if (target.matches("input, select, textarea") || target.isContentEditable) {
    if (event.key === "Escape") target.blur();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || state.busy) return;
  const key = event.key.toLowerCase();
  const step = { j: 1, arrowdown: 1, k: -1, arrowup: -1 }[key];
  if (!KEY_LABELS[key] && !step) return;
  event.preventDefault();
  state.busy = true;
  try {
    if (KEY_LABELS[key] && state.chosen) {
      await saveLabel(KEY_LABELS[key]);
      await move(1);
    } else if (step) {
      await move(step);
    }
  } catch (error) {
    showError(error.message);
  } finally {
    state.busy = false;
  }
}

async function refreshCounts() {
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);  // the reviewer's own day
  try {
    const counts = await call(`/api/records/counts?${new URLSearchParams({ day_start: midnight.toISOString() })}`);
    $("c-to-review").textContent = counts.to_review;
    $("c-today").textContent = counts.labelled_today;
    const agreement = counts.agreement;
    $("c-agreement").textContent = agreement.share === null ? "-" : `${Math.round(agreement.share * 100)}%`;
    $("c-agreement").title = `${agreement.agreed} of ${agreement.compared} labelled real or fake; ` +
      `${agreement.uncertain} more the model called uncertain`;
  } catch (error) {
    showError(error.message);
  }
}

function svg(tag, attributes, text) {
  const made = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
  if (text !== undefined) made.textContent = text;
  return made;
}

function share(part, whole) {
  return whole ? part / whole : null;
}

const MEASURES = [
  ["agreement", "Agreement", (r) => share(r.agreed, r.reviewed - r.uncertain)],
  ["false-positives", "False positives on reviewed real", (r) => share(r.false_positives, r.labelled_real)],
  ["missed-fakes", "Fakes called real", (r) => share(r.missed_fakes, r.labelled_fake)],
];

function lineChart(name, title, days, versions, measure) {
  const [width, height, left, bottom, top] = [320, 160, 34, 22, 8];
  const x = (day) => left + (days.length === 1 ? (width - left) / 2 : (days.indexOf(day) * (width - left - 10)) / (days.length - 1));
  const y = (value) => top + (1 - value) * (height - top - bottom);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, "data-measure": name });
  chart.append(svg("line", { x1: left, y1: y(0), x2: width, y2: y(0), class: "axis" }), svg("line", { x1: left, y1: top, x2: left, y2: y(0), class: "axis" }));
  for (const tick of [0, 0.5, 1]) chart.append(svg("text", { x: 2, y: y(tick) + 3 }, `${tick * 100}%`));
  chart.append(svg("text", { x: left, y: height - 4 }, days[0]));
  if (days.length > 1) chart.append(svg("text", { x: width - 60, y: height - 4 }, days[days.length - 1]));
  versions.forEach(([key, rows], index) => {
    const points = rows.map((r) => [r, measure(r)]).filter(([, value]) => value !== null);
    const colour = COLOURS[index % COLOURS.length];
    chart.append(svg("polyline", { points: points.map(([r, v]) => `${x(r.day)},${y(v)}`).join(" "), stroke: colour, "data-version": key }));
    for (const [r, value] of points) {
      const dot = svg("circle", { cx: x(r.day), cy: y(value), r: 3, fill: colour });
      dot.append(svg("title", {}, `${key} ${r.day}: ${Math.round(value * 100)}% (reviewed ${r.reviewed})`));
      chart.append(dot);
    }
  });
  const figure = element("figure");
  figure.append(chart, element("figcaption", title));
  return figure;
}

async function drawAgreement() {
  try {
    await drawSeries();
  } catch (error) {
    showError(error.message);
  }
}

async function drawSeries() {
  // The list's Since filter is the chart's window too; without it the server's default (the last 90 days).
  const since = $("f-since").value.trim();
  const body = await call(`/api/records/agreement${since ? `?${new URLSearchParams({ since })}` : ""}`);
  const days = [...new Set(body.series.map((r) => r.day))].sort();
  const versions = new Map();
  for (const r of body.series) {
    const key = `${r.model} ${r.version}`;
    if (!versions.has(key)) versions.set(key, []);
    versions.get(key).push(r);
  }
  $("chart-empty").hidden = body.series.length > 0;
  $("versions").replaceChildren(...[...new Set(body.series.map((r) => r.version))].map((v) => { const o = element("option"); o.value = v; return o; }));
  $("chart-rows").replaceChildren(...body.series.map((r) => {
    const tr = element("tr");
    tr.append(...[r.day, r.model, r.version, r.reviewed, r.agreed, r.false_positives, r.missed_fakes, r.uncertain].map((v) => element("td", v)));
    return tr;
  }));
  if (!body.series.length) { $("chart").replaceChildren(); return; }
  const legend = element("div", undefined, "legend");
  [...versions.keys()].forEach((key, index) => {
    const item = element("span");
    const swatch = svg("svg", { class: "swatch", viewBox: "0 0 12 12" });
    swatch.append(svg("rect", { width: 12, height: 12, fill: COLOURS[index % COLOURS.length] }));
    item.append(swatch, key);
    legend.append(item);
  });
  $("chart").replaceChildren(legend, ...MEASURES.map(([name, title, measure]) => lineChart(name, title, days, [...versions], measure)));
}

function fromAddress() {
  const params = new URLSearchParams(location.search);
  for (const [key, id] of FILTERS) if (params.has(key)) $(id).value = params.get(key);
  const limit = parseInt(params.get("limit"), 10);
  if (limit > 0) state.limit = Math.min(limit, 200);
}

function wire() {
  fromAddress();
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); load(0, "first"); drawAgreement(); });
  $("label-form").addEventListener("submit", label);
  $("prev").addEventListener("click", () => load(state.offset - state.limit, "first"));
  $("next").addEventListener("click", () => load(nextOffset(), "first"));
  document.addEventListener("keydown", byKey);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token-input").value;
    sessionStorage.setItem("pageToken", state.token);
    $("token-form").hidden = true;
    load(0, "first");
    refreshCounts();
    drawAgreement();
  });
  load(0, "first");
  refreshCounts();
  drawAgreement();
}

document.addEventListener("DOMContentLoaded", wire);
