// ferops browser client: camera frames -> POST /analyze -> boxes and labels; labeling with
// consent (POST /label); a mood timeline kept in this page only. No dependencies, nothing
// fetched from anywhere but this service (the page's Content-Security-Policy says 'self').
"use strict";

const MAX_SIDE = 480;           // frames are downscaled to the service's detect_max_side
const JPEG_QUALITY = 0.85;
const TIMELINE_S = 120;         // seconds shown in the chart (the export has everything)
const COLORS = ["#ff6b6b", "#8bc34a", "#b39ddb", "#ffd166", "#64b5f6", "#ffab40", "#e0e0e0",
                "#f48fb1", "#4dd0e1"];

const $ = (id) => document.getElementById(id);
const state = {
  key: "", classes: [], labeling: false, version: "?", consent: null,
  running: false, stream: null, last: null, lastBlob: null, lastImage: null,
  timeline: [], done: [], backoff: 0, frames: 0, errors: 0, sessionStart: Date.now(),
};
// Read by the browser tests and the benchmark (frames analysed, errors, frame rate, bytes
// of frames sent).
window.feropsStats = { frames: 0, errors: 0, fps: 0, labeled: 0, bytes: 0, state: "connecting" };

class ServiceDown extends Error {}
class NeedsKey extends Error {}

async function api(path, body, contentType) {
  const headers = { "content-type": contentType || "application/json" };
  if (state.key) headers.authorization = "Bearer " + state.key;
  let res;
  try {
    res = await fetch(path, { method: "POST", headers, body: body ?? "{}", cache: "no-store" });
  } catch (e) {
    throw new ServiceDown("service unreachable");
  }
  if (res.status === 401) throw new NeedsKey((await res.json()).error);
  if (res.status === 503 || res.status === 502 || res.status === 504) {
    throw new ServiceDown("service unavailable (" + res.status + ")");
  }
  const answer = await res.json().catch(() => ({ error: "answer was not JSON" }));
  if (!res.ok) throw Object.assign(new Error(answer.error || res.statusText), { status: res.status });
  return answer;
}

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = kind || "";
  document.body.dataset.state = kind || "live";
  window.feropsStats.state = kind || "live";
}

// ---------------------------------------------------------------- service and model

async function refreshInfo() {
  try {
    const info = await api("/info");
    if (!info.ready) throw new ServiceDown(info.reason || "no model yet");
    state.version = info.model_version;
    state.labeling = Boolean(info.labeling);
    $("model-version").textContent = `v${info.model_version} (${info.classes.length} classes)`;
    if (info.classes.join() !== state.classes.join()) {
      state.classes = info.classes;
      buildLabelButtons();
      drawTimeline();
    }
    if (!state.running) setStatus("ready: start the camera or choose a photo");
    return true;
  } catch (e) {
    handleError(e);
    return false;
  }
}

function handleError(e) {
  if (e instanceof NeedsKey) {
    setStatus("the service needs an API key: enter it above", "down");
  } else if (e instanceof ServiceDown) {
    setStatus("service unavailable, retrying…", "down");
  } else {
    setStatus("error: " + e.message, "down");
  }
}

// ---------------------------------------------------------------- camera and analysis

async function startCamera() {
  try {
    state.stream = await navigator.mediaDevices.getUserMedia(
      { video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  } catch (e) {
    setStatus("no camera: " + e.message + " (a photo still works)", "down");
    return;
  }
  const video = $("video");
  video.srcObject = state.stream;
  await video.play();
  state.running = true;
  state.lastImage = null;
  $("start").disabled = true;
  $("stop").disabled = false;
  requestAnimationFrame(drawLive);
  analyseLoop();
}

function stopCamera() {
  state.running = false;
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  $("start").disabled = false;
  $("stop").disabled = true;
}

function grabFrame(source, width, height) {
  const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  canvas.getContext("2d").drawImage(source, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
}

async function analyseLoop() {
  const video = $("video");
  while (state.running) {
    if (!video.videoWidth) { await sleep(50); continue; }
    const blob = await grabFrame(video, video.videoWidth, video.videoHeight);
    try {
      const result = await api("/analyze", blob, "image/jpeg");
      accept(result, blob);
      if (state.backoff) { state.backoff = 0; refreshInfo(); }
      setStatus("live");
    } catch (e) {
      window.feropsStats.errors = ++state.errors;
      handleError(e);
      state.backoff = Math.min(4000, Math.max(250, state.backoff * 2));
      await sleep(state.backoff);
    }
  }
}

function accept(result, blob) {
  state.last = result;
  state.lastBlob = blob;
  const now = performance.now();
  state.done.push(now);
  while (state.done.length && now - state.done[0] > 2000) state.done.shift();
  window.feropsStats.frames = ++state.frames;
  window.feropsStats.bytes += blob.size;
  const fps = state.done.length > 1 ? (state.done.length - 1) * 1000 / (now - state.done[0]) : 0;
  window.feropsStats.fps = fps;
  $("fps").textContent = fps.toFixed(1) + " fps";
  if (result.model_version && result.model_version !== state.version) refreshInfo();
  listFaces(result);
  if (result.faces.length) record(result.faces[0], result.model_version);
}

// ---------------------------------------------------------------- drawing

function drawLive() {
  if (!state.running) return;
  const video = $("video");
  const view = $("view");
  if (video.videoWidth) {
    if (view.width !== video.videoWidth) {
      view.width = video.videoWidth;
      view.height = video.videoHeight;
    }
    view.getContext("2d").drawImage(video, 0, 0, view.width, view.height);
    drawFaces(state.last);
  }
  requestAnimationFrame(drawLive);
}

function drawFaces(result) {
  if (!result) return;
  const view = $("view");
  const ctx = view.getContext("2d");
  const s = view.width / result.width;
  ctx.lineWidth = 3;
  ctx.font = "bold 18px system-ui, sans-serif";
  result.faces.forEach((face, i) => {
    const [x, y, w, h] = face.box.map((v) => v * s);
    ctx.strokeStyle = i === 0 ? "#ffd166" : "#64b5f6";
    ctx.strokeRect(x, y, w, h);
    const text = `${face.label} ${Math.round(face.confidence * 100)}%`;
    const tw = ctx.measureText(text).width + 8;
    ctx.fillStyle = "rgba(0,0,0,0.7)";
    ctx.fillRect(x, Math.max(0, y - 24), tw, 24);
    ctx.fillStyle = "#ffffff";
    ctx.fillText(text, x + 4, Math.max(18, y - 6));
  });
}

function listFaces(result) {
  const list = $("faces");
  list.replaceChildren(...result.faces.map((face) => {
    const li = document.createElement("li");
    const guess = face.best_guess ? ` (best guess ${face.best_guess})` : "";
    li.textContent = `${face.label} ${Math.round(face.confidence * 100)}%${guess}`;
    li.className = "face";
    return li;
  }));
  if (!result.faces.length) {
    const li = document.createElement("li");
    li.textContent = "no face found";
    list.replaceChildren(li);
  }
}

// ---------------------------------------------------------------- a photo instead of a camera

async function analysePhoto(file) {
  if (!file) return;
  stopCamera();
  const image = await createImageBitmap(file).catch(() => null);
  if (!image) { setStatus("that file is not an image this browser can read", "down"); return; }
  const blob = await grabFrame(image, image.width, image.height);
  try {
    const result = await api("/analyze", blob, "image/jpeg");
    const view = $("view");
    view.width = result.width;
    view.height = result.height;
    view.getContext("2d").drawImage(image, 0, 0, view.width, view.height);
    accept(result, blob);
    drawFaces(result);
    setStatus("photo analysed");
  } catch (e) {
    handleError(e);
  }
}

// ---------------------------------------------------------------- labeling

function buildLabelButtons() {
  const box = $("labels");
  box.replaceChildren(...state.classes.slice(0, 9).map((name, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `${i + 1} ${name}`;
    b.setAttribute("aria-keyshortcuts", String(i + 1));
    b.addEventListener("click", () => labelFace(i));
    return b;
  }));
}

async function askConsent() {
  const dialog = $("consent");
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  state.consent = dialog.returnValue === "yes";
  return state.consent;
}

async function labelFace(index) {
  const status = $("label-status");
  const label = state.classes[index];
  if (!label) return;
  if (!state.labeling) {
    status.textContent = "labeling is switched off on this server (serving.labeling)";
    return;
  }
  if (!state.last || !state.last.faces.length || !state.lastBlob) {
    status.textContent = "no face to label in the current frame";
    return;
  }
  const blob = state.lastBlob;      // the frame whose faces are on screen
  if (state.consent !== true && !(await askConsent())) {
    status.textContent = "nothing stored: no consent";
    return;
  }
  const query = new URLSearchParams({ label, face: "0", consent: "yes" });
  try {
    const answer = await api("/label?" + query, blob, "image/jpeg");
    window.feropsStats.labeled += 1;
    status.textContent = `stored as ${answer.label} (${answer.saved})`;
  } catch (e) {
    status.textContent = "not stored: " + e.message;
  }
}

// ---------------------------------------------------------------- mood timeline

// One timeline point per POINT_MS: the mean probabilities of the largest face over the frames
// in it. Frame-to-frame jitter is not mood, and 2 points a second keep a day in memory.
const POINT_MS = 500;

function record(face, version) {
  const now = Date.now();
  const b = state.bucket ||= { t: now, n: 0, sums: {} };
  b.n += 1;
  for (const [name, p] of Object.entries(face.probabilities)) b.sums[name] = (b.sums[name] || 0) + p;
  if (now - b.t < POINT_MS) return;
  const probabilities = Object.fromEntries(
    Object.entries(b.sums).map(([name, sum]) => [name, Math.round(sum / b.n * 1e4) / 1e4]));
  const [label, confidence] = Object.entries(probabilities).reduce((a, c) => (c[1] > a[1] ? c : a));
  state.timeline.push({ t: now, model_version: version, label, confidence, frames: b.n,
                        probabilities });
  state.bucket = null;
  drawTimeline();
}

function drawTimeline() {
  const canvas = $("timeline");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 20;
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = "#445";
  ctx.strokeRect(pad, 4, W - pad - 4, H - pad - 4);
  ctx.fillStyle = "#b8c0c8";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText("1", 6, 12);
  ctx.fillText("0", 6, H - pad);
  ctx.fillText(`last ${TIMELINE_S} s`, W - 70, H - 4);
  const now = Date.now();
  const points = state.timeline.filter((p) => now - p.t <= TIMELINE_S * 1000);
  state.classes.forEach((name, c) => {
    ctx.strokeStyle = COLORS[c % COLORS.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = pad + (W - pad - 4) * (1 - (now - p.t) / (TIMELINE_S * 1000));
      const y = 4 + (H - pad - 8) * (1 - (p.probabilities[name] ?? 0));
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
  });
  $("legend").replaceChildren(...state.classes.map((name, c) => {
    const span = document.createElement("span");
    span.style.color = COLORS[c % COLORS.length];
    span.textContent = `━ ${name}`;     // the class name as text, not colour alone
    return span;
  }));
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function exportCsv() {
  const head = ["time", "model_version", "label", "confidence", "frames", ...state.classes];
  const rows = state.timeline.map((p) => [new Date(p.t).toISOString(), p.model_version,
    p.label, p.confidence, p.frames, ...state.classes.map((c) => p.probabilities[c] ?? "")]);
  download("ferops-mood.csv", [head, ...rows].map((r) => r.join(",")).join("\n") + "\n",
           "text/csv");
}

function exportJson() {
  download("ferops-mood.json", JSON.stringify({ classes: state.classes,
    started: new Date(state.sessionStart).toISOString(), points: state.timeline.map((p) =>
      ({ ...p, t: new Date(p.t).toISOString() })) }, null, 1), "application/json");
}

// ---------------------------------------------------------------- wiring

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function wire() {
  $("start").addEventListener("click", startCamera);
  $("stop").addEventListener("click", stopCamera);
  $("photo").addEventListener("change", (e) => analysePhoto(e.target.files[0]));
  $("key").addEventListener("change", (e) => { state.key = e.target.value.trim(); refreshInfo(); });
  $("export-csv").addEventListener("click", exportCsv);
  $("export-json").addEventListener("click", exportJson);
  $("clear").addEventListener("click", () => { state.timeline = []; state.bucket = null; drawTimeline(); });
  const stage = $("stage");
  stage.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("drag"); });
  stage.addEventListener("dragleave", () => stage.classList.remove("drag"));
  stage.addEventListener("drop", (e) => {
    e.preventDefault();
    stage.classList.remove("drag");
    analysePhoto(e.dataTransfer.files[0]);
  });
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || $("consent").open) return;
    if (e.key >= "1" && e.key <= "9") labelFace(Number(e.key) - 1);
  });
  refreshInfo();
  // Keeps the model version current (a hot swap) and notices a service that came back.
  setInterval(() => { if (!state.running) refreshInfo(); }, 5000);
  if (new URLSearchParams(location.search).has("autostart")) startCamera();
}

wire();
