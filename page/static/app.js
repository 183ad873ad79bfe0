"use strict";
// The upload page: validate -> preview -> POST /api/analyze -> verdict, faces or people, heatmap. No third-party code.

const $ = (id) => document.getElementById(id);
const state = { file: null, maxBytes: 10 * 1024 * 1024, types: [], previewUrl: null, token: sessionStorage.getItem("pageToken") || "" };

// The page token (when the operator set one) is entered once and kept for this browser session only.
function authHeaders() {
  return state.token ? { "X-Page-Token": state.token } : {};
}

function askForToken(reason) {
  $("token-form").hidden = false;
  $("token-note").textContent = reason || "";
  $("token-input").focus();
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function percent(p) {
  return `${(100 * p).toFixed(1)} %`;
}

const VERDICT_NAMES = { real: "Real", fake: "Fake", uncertain: "Uncertain" };

// How the hint writes a type of /api/info's accepted_types: its subtype in capitals, unless named here.
const TYPE_NAMES = { "image/webp": "WebP", "video/quicktime": "MOV", "video/webm": "WebM", "video/x-matroska": "MKV", "video/x-msvideo": "AVI" };

function typeName(type) {
  return TYPE_NAMES[type] || type.split("/").pop().replace(/^x-/, "").toUpperCase();
}

function orList(names) {
  return names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}`;
}

// The accepted types by kind, in the server's order: "JPEG, PNG or HEIC; MP4 or WebM".
function typesHint(types) {
  const kinds = new Map();
  for (const type of types) {
    const kind = type.split("/")[0];
    kinds.set(kind, [...new Set([...(kinds.get(kind) || []), typeName(type)])]);
  }
  return [...kinds.values()].map(orList).join("; ");
}

function fpr(rate) {
  return `${(100 * rate).toFixed(rate < 0.01 ? 1 : 0)} %`;
}

// One sentence on what the verdict means, from the answer's decision block (docs/api.md).
function decisionNote(body) {
  const d = body.decision || {};
  if (body.consistency && !body.consistency.agrees) {
    return `Uncertain: ${body.consistency.reason}. Have a person review it.`;
  }
  if (!d.calibrated) {
    return "Uncalibrated model: the verdict is the top label. No operating point was set for it (no decision.json), so it never answers uncertain.";
  }
  const score = `P(${d.fake_label}) ${percent(body.probabilities[d.fake_label])}`;
  if (body.verdict === "uncertain") {
    return `Uncertain: ${score} is below the fake threshold (${percent(d.fake_threshold)}, set to flag at most ${fpr(d.target_fpr)} of real images) ` +
      `but at or above ${percent(d.uncertain_threshold)}, where a looser ${fpr(d.uncertain_fpr)} operating point would flag it. ` +
      "The model cannot tell; have a person review it.";
  }
  if (body.verdict === "fake") {
    return `Fake: ${score} is at or above the threshold ${percent(d.fake_threshold)}, set so that at most ${fpr(d.target_fpr)} of real images are flagged.`;
  }
  return `Real: ${score} is below ${percent(d.uncertain_threshold)}, the start of the uncertain band (fake from ${percent(d.fake_threshold)}, set for ${fpr(d.target_fpr)} of real images).`;
}

async function loadInfo() {
  try {
    const response = await fetch("/api/info", { headers: authHeaders() });
    const info = await response.json();
    if (response.status === 401) {
      askForToken(state.token ? `${info.detail}.` : "");
      return;
    }
    $("token-form").hidden = true;
    state.maxBytes = info.max_upload_bytes;
    state.types = info.accepted_types;
    $("limits").textContent = `${typesHint(state.types)}; up to ${(info.max_upload_bytes / 1048576).toFixed(0)} MB`;
    $("demo-banner").hidden = !info.demo;
    if (!info.available) {
      $("server-note").textContent = `The model server is not answering yet (${info.detail}).`;
      $("server-note").hidden = false;
    }
  } catch (err) {
    $("server-note").textContent = "The page server is not answering.";
    $("server-note").hidden = false;
  }
}

function choose(file) {
  showError("");
  $("result").hidden = true;
  if (!file) return;
  // An empty type (browsers that do not know HEIC, say) is left to the server, which checks the bytes.
  if (state.types.length && file.type && !state.types.includes(file.type)) {
    state.file = null;
    $("analyze").disabled = true;
    showError(`"${file.name}" is not a supported image or video (${file.type || "unknown type"}); use ${typesHint(state.types)}.`);
    return;
  }
  if (file.size > state.maxBytes) {
    state.file = null;
    $("analyze").disabled = true;
    showError(`"${file.name}" is ${(file.size / 1048576).toFixed(1)} MB; at most ${(state.maxBytes / 1048576).toFixed(0)} MB are accepted.`);
    return;
  }
  state.file = file;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  state.isVideo = file.type.startsWith("video/");
  $("preview").hidden = state.isVideo;
  $("preview-video").hidden = !state.isVideo;
  if (state.isVideo) {
    $("preview").removeAttribute("src");
    $("preview-video").src = state.previewUrl;
  } else {
    $("preview-video").removeAttribute("src");
    $("preview").src = state.previewUrl;
  }
  $("heatmap").hidden = true;
  $("boxes").replaceChildren();
  $("file-name").textContent = `${file.name} (${(file.size / 1024).toFixed(0)} KB)`;
  $("preview-wrap").hidden = false;
  $("analyze").disabled = false;
}

function drawBoxes(body) {
  const [width, height] = body.image_size;
  const layer = $("boxes");
  layer.replaceChildren();
  body.faces.forEach((face, index) => {
    const [x, y, w, h] = face.box;
    const div = document.createElement("div");
    div.className = `face-box ${face.verdict}`;
    div.style.left = `${(100 * x) / width}%`;
    div.style.top = `${(100 * y) / height}%`;
    div.style.width = `${(100 * w) / width}%`;
    div.style.height = `${(100 * h) / height}%`;
    const tag = document.createElement("span");
    tag.textContent = `#${index + 1} ${VERDICT_NAMES[face.verdict]} · ${face.label} ${percent(face.confidence)}`;
    div.appendChild(tag);
    layer.appendChild(div);
  });
}

function render(body) {
  $("demo-banner").hidden = !body.demo;
  const verdict = $("verdict");
  verdict.textContent = VERDICT_NAMES[body.verdict] || body.verdict;
  verdict.className = `verdict ${body.verdict}`;
  const meaning = $("decision-note");
  meaning.textContent = decisionNote(body);
  meaning.className = `decision-note ${body.verdict}`;
  $("confidence-text").textContent = `top label ${body.label} ${percent(body.confidence)}` + (body.decision && body.decision.calibrated ? " (calibrated)" : "");
  const bar = $("confidence-bar");
  bar.style.width = "0";
  requestAnimationFrame(() => requestAnimationFrame(() => { bar.style.width = `${(100 * body.confidence).toFixed(1)}%`; }));
  $("probabilities").replaceChildren(...Object.entries(body.probabilities).map(([label, p]) => {
    const li = document.createElement("li");
    li.innerHTML = "<span></span><strong></strong>";
    li.firstChild.textContent = label;
    li.lastChild.textContent = percent(p);
    return li;
  }));
  let note;
  // "no face" means none of at least the size the search could see (smaller where the upload was decoded smaller)
  const least = body.face_search ? ` of at least ${body.face_search.smallest_face} px` : "";
  if (body.media === "video") {
    note = body.analyzed === "faces"
      ? `${body.people.length} ${body.people.length === 1 ? "person" : "people"} in ${body.frames_analyzed} frames sampled over ${body.duration_s.toFixed(1)} s; the most-fake person (#${body.decided_by_person + 1}) decides.`
      : `No face${least} in ${body.frames_analyzed} frames sampled over ${body.duration_s.toFixed(1)} s: whole frames were classified instead (the model was trained on face crops, so this verdict means less).`;
  } else if (body.analyzed === "faces") {
    const skipped = body.faces_skipped.length ? `; ${body.faces_skipped.length} more not classified (limit)` : "";
    note = `${body.faces.length} face${body.faces.length === 1 ? "" : "s"} found; the most-fake face (#${body.decided_by_face + 1}) decides${skipped}.`;
  } else if (body.mode === "off") {
    note = "Face detection off: the whole image was classified.";
  } else {
    note = `No face${least} found: the whole image was classified instead (the model was trained on face crops, so this verdict means less).`;
  }
  $("analyzed-note").textContent = note;
  renderProvenance(body.provenance);
  renderMatch(body.match);
  $("people").replaceChildren(...(body.people || []).map((person) => personItem(body, person)));
  if (body.media === "video") drawFirstFrames(body);
  $("faces").replaceChildren(...(body.faces || []).map((face, index) => {
    const li = document.createElement("li");
    li.innerHTML = "<span></span><strong></strong>";
    // the crop the model saw, in the pixels it was cut from: under its 224-px input the crop was enlarged
    const [cropW, cropH] = face.crop_pixels || [];
    const seen = cropW ? ` · from a ${cropW}×${cropH} px crop${Math.min(cropW, cropH) < 224 ? ` (enlarged ${(224 / Math.min(cropW, cropH)).toFixed(1)}×)` : ""}` : "";
    li.firstChild.textContent = `Face #${index + 1} at ${face.box.join(", ")}${seen}`;
    li.lastChild.textContent = `${VERDICT_NAMES[face.verdict]} · ${face.label} ${percent(face.confidence)}`;
    return li;
  }));
  if (body.media === "video") $("boxes").replaceChildren(); else drawBoxes(body);
  $("heatmap").hidden = true;
  $("heatmap-toggle").parentElement.hidden = body.media === "video";  // videos are not explained
  if (body.explanation) {
    $("heatmap").src = `data:image/png;base64,${body.explanation.overlay_png}`;
    $("heatmap").hidden = !$("heatmap-toggle").checked;
  }
  $("meta").textContent = `${body.model} ${body.version} · ${body.runtime} ${body.precision}` +
    (body.explanation ? ` · ${body.explanation.method}` : "") + (body.demo ? " · DEMO WEIGHTS" : "") +
    (body.record ? (body.record.kept ? ` · record ${body.record.id}` : " · record not kept") : "");
  $("result").hidden = false;
}

// Seen before: a reviewer labelled a near-identical image (docs/records.md); shown beside the verdict, never replacing it.
function renderMatch(match) {
  const box = $("match");
  box.hidden = !match;
  if (!match) return;
  box.textContent = `Seen before: a reviewer labelled a near-identical image ${match.label.toUpperCase()} ` +
    `(record ${match.record}, ${match.distance} of 256 bits apart, labelled ${match.labelled_at}). The model's own verdict is above.`;
}

// The provenance panel: the summary, then each source that said something (docs/api.md#provenance-beside-the-verdict).
function renderProvenance(block) {
  const panel = $("provenance");
  panel.hidden = !block;
  if (!block) return;
  const badge = $("provenance-declared");
  badge.textContent = block.declared_ai === true ? "declares AI" : block.declared_ai === false ? "declares capture" : "nothing declared";
  badge.className = `declared${block.declared_ai === true ? " ai" : block.declared_ai === false ? " capture" : ""}`;
  $("provenance-statement").textContent = block.statement;
  const rows = [];
  const c2pa = block.c2pa || {};
  const c2paRow = {
    read: () => `${c2pa.validation_state}, ${c2pa.trust}`,
    remote: () => `stored elsewhere (${c2pa.url || "no URL given"}), not fetched`,
    unreadable: () => `present but unreadable: ${c2pa.reason}`,
  }[c2pa.state];
  rows.push(["C2PA", c2paRow ? c2paRow() : c2pa.present === false ? "none" : "not read"]);
  if (c2pa.state === "read") {
    rows.push(["signer", [c2pa.signer.common_name, c2pa.signer.organization].filter(Boolean).join(", ") || "unnamed"]);
    rows.push(["claim generator", c2pa.claim_generator || "—"]);
    rows.push(["source type", (c2pa.digital_source_types || []).join(", ") || "none declared"]);
    if (c2pa.failures && c2pa.failures.length) rows.push(["failures", c2pa.failures.join(", ")]);
  }
  if (block.xmp) rows.push(["XMP source type", block.xmp.digital_source_type]);
  if (block.png) rows.push(["PNG generator", `${block.png.generator}: "${block.png.excerpt}"`]);
  if (block.exif) rows.push(["EXIF", Object.entries(block.exif).map(([k, v]) => `${k} ${v}`).join(", ")]);
  if (block.errors && block.errors.length) rows.push(["unreadable", block.errors.join("; ")]);
  $("provenance-details").replaceChildren(...rows.flatMap(([term, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    return [dt, dd];
  }));
}

const SVG = "http://www.w3.org/2000/svg";

function fakeScore(body, probabilities) {
  const label = (body.decision && body.decision.fake_label) || "";
  return label in probabilities ? probabilities[label] : Math.max(...Object.values(probabilities));
}

// A person: the frame where they are first seen (drawn by drawFirstFrames), their verdict, and their fake
// probability over time as an inline SVG line (0 at the bottom, 1 at the top; dashed: 0.5).
function personItem(body, person) {
  const li = document.createElement("li");
  li.className = "person";
  li.id = `person-${person.id}`;
  const canvas = document.createElement("canvas");
  canvas.width = 96;  // the person's face, square, as first seen
  canvas.height = 96;
  const text = document.createElement("div");
  const line = document.createElement("div");
  line.className = `line ${person.verdict}`;
  line.textContent = `Person #${person.id + 1}: ${VERDICT_NAMES[person.verdict]} · ${person.label} ${percent(person.confidence)}`;
  const when = document.createElement("div");
  when.className = "when";
  when.textContent = `first seen at ${person.first_t.toFixed(2)} s, in ${person.frames_seen} of ${body.frames_analyzed} sampled frames`;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 100 40");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-label", "fake probability over time");
  const middle = document.createElementNS(SVG, "line");
  [["x1", 0], ["y1", 20], ["x2", 100], ["y2", 20]].forEach(([k, v]) => middle.setAttribute(k, v));
  const poly = document.createElementNS(SVG, "polyline");
  const span = Math.max(body.duration_s, 1e-6);
  poly.setAttribute("points", person.timeline.map((p) => `${((100 * p.t) / span).toFixed(2)},${(40 - 40 * fakeScore(body, p.probabilities)).toFixed(2)}`).join(" "));
  svg.append(middle, poly);
  text.append(line, when, svg);
  li.append(canvas, text);
  return li;
}

function seek(video, t) {
  return new Promise((resolve) => {
    const done = () => { video.removeEventListener("seeked", done); resolve(); };
    video.addEventListener("seeked", done);
    setTimeout(done, 3000);
    video.currentTime = t;
  });
}

async function drawFirstFrames(body) {
  const video = $("preview-video");
  if (video.readyState < 1) await new Promise((resolve) => { video.addEventListener("loadedmetadata", resolve, { once: true }); setTimeout(resolve, 3000); });
  for (const person of body.people) {
    const canvas = document.querySelector(`#person-${person.id} canvas`);
    if (!canvas) continue;
    await seek(video, person.first_t);
    const context = canvas.getContext("2d");
    // The face crop the model saw: a square around the box with a 20 % margin, kept inside the frame.
    const [x, y, w, h] = person.first_box;
    const [width, height] = body.image_size;
    const side = Math.min(Math.max(w, h) * 1.4, width, height);
    const left = Math.min(Math.max(0, x + w / 2 - side / 2), width - side);
    const top = Math.min(Math.max(0, y + h / 2 - side / 2), height - side);
    const kx = (video.videoWidth || width) / width;
    const ky = (video.videoHeight || height) / height;
    try {
      context.drawImage(video, left * kx, top * ky, side * kx, side * ky, 0, 0, canvas.width, canvas.height);
    } catch (err) {
      continue;
    }
    context.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue(`--${person.verdict}`).trim() || "#fff";
    context.lineWidth = 3;
    context.strokeRect(1.5, 1.5, canvas.width - 3, canvas.height - 3);
    canvas.dataset.drawn = "true";
  }
}

async function analyze() {
  if (!state.file) return;
  const button = $("analyze");
  button.disabled = true;
  button.classList.add("busy");
  showError("");
  const form = new FormData();
  form.append("image", state.file, state.file.name);
  if ($("face-mode").value) form.append("face_mode", $("face-mode").value);
  try {
    const response = await fetch("/api/analyze", { method: "POST", body: form, headers: authHeaders() });
    let body;
    try {
      body = await response.json();
    } catch (err) {
      body = { error: `HTTP ${response.status}`, detail: "the server sent no JSON" };
    }
    if (response.ok) {
      render(body);
    } else if (response.status === 401) {
      askForToken(`${body.detail}.`);
      showError(`${body.error}: ${body.detail}`);
    } else {
      $("result").hidden = true;
      showError(`${body.error}: ${body.detail}`);
    }
  } catch (err) {
    showError(`network error: ${err.message}`);
  } finally {
    button.classList.remove("busy");
    button.disabled = !state.file;
  }
}

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => choose(event.target.files[0]));
  ["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((name) => drop.addEventListener(name, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    choose(event.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") $("file").click();
  });
  $("analyze").addEventListener("click", analyze);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token-input").value.trim();
    sessionStorage.setItem("pageToken", state.token);
    showError("");
    loadInfo();
  });
  $("heatmap-toggle").addEventListener("change", (event) => {
    $("heatmap").hidden = !event.target.checked || !$("heatmap").getAttribute("src");
  });
  const stage = $("stage");
  stage.addEventListener("mousemove", (event) => {
    const rect = stage.getBoundingClientRect();
    const origin = `${(100 * (event.clientX - rect.left)) / rect.width}% ${(100 * (event.clientY - rect.top)) / rect.height}%`;
    ["preview", "heatmap", "boxes"].forEach((id) => { $(id).style.transformOrigin = origin; });
  });
  loadInfo();
}

document.addEventListener("DOMContentLoaded", wire);
