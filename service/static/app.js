// stylize web page: plain ES module, public HTTP API only, same origin, no dependencies.

import { confirmCost, showPresetEstimates } from "./estimate.js";

const $ = (sel, root = document) => root.querySelector(sel);

const PRESETS = {
  fast: { iterations: 300, image_size: 128, width: 0.5 },
  balanced: { iterations: 2000, image_size: 256 },
  quality: { iterations: 6000, image_size: 256, style_size: 384 },
};
const TERMINAL = new Set(["ready", "failed", "canceled"]);
const KEY_STORAGE = "stylize.apiKey";

// ------------------------------------------------------------------ API
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function authHeaders() {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...authHeaders(), ...(options.headers || {}) },
  });
  if (!response.ok) {
    let code = "http_" + response.status;
    let message = response.statusText || "request failed";
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      }
    } catch {
      /* not JSON: keep the status text */
    }
    throw new ApiError(response.status, code, message);
  }
  return response;
}

const HINTS = {
  400: "The file is not a readable image",
  401: "An API key is needed (see “API key” at the top)",
  403: "The API key was refused",
  404: "Not found",
  409: "The style is not ready yet",
  413: "Too big",
  415: "Unsupported file type",
  422: "Invalid option",
  429: "The service is busy, try again in a moment",
  504: "The service took too long",
};

function readable(err) {
  if (err instanceof ApiError) {
    const hint = HINTS[err.status];
    return hint ? `${hint}: ${err.message}` : err.message;
  }
  return `Could not reach the service (${err.message})`;
}

function showError(el, err) {
  el.textContent = err ? readable(err) : "";
  el.hidden = !err;
}

// ------------------------------------------------------------------ API key
const keyInput = $("#api-key");
keyInput.value = localStorage.getItem(KEY_STORAGE) || "";
keyInput.addEventListener("change", () => {
  const value = keyInput.value.trim();
  if (value) localStorage.setItem(KEY_STORAGE, value);
  else localStorage.removeItem(KEY_STORAGE);
});

// ------------------------------------------------------------------ styles
const styles = new Map(); // id -> style document
const streams = new Map(); // id -> EventSource
const history = new Map(); // id -> [[iteration, loss], ...] from the progress stream
const cards = new Map(); // id -> <li>
let selectedStyle = null;

function fmtSeconds(s) {
  if (s == null || !isFinite(s)) return "—";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function thumbUrl(style) {
  const link = style.links.preview || style.links.style_image;
  return `${link}?r=${style.revision}`;
}

function lossSummary(style) {
  const m = style.metrics || {};
  const pick = m.holdout_loss && Object.keys(m.holdout_loss).length ? m.holdout_loss : m.final_train_loss;
  if (!pick) return "";
  const total = pick.total ?? Object.values(pick).reduce((a, b) => a + (Number(b) || 0), 0);
  return Number.isFinite(total) ? `final loss ${Number(total).toPrecision(3)}` : "";
}

// The training loss against the iteration, scaled to the box (min at the bottom).
function drawCurve(card, id) {
  const points = history.get(id) || [];
  const line = $(".curve polyline", card);
  $(".curve", card).style.display = points.length < 2 ? "none" : "";
  if (points.length < 2) return;
  const x0 = points[0][0];
  const xSpan = Math.max(1e-6, points[points.length - 1][0] - x0);
  const losses = points.map(([, y]) => y);
  const lo = Math.min(...losses);
  const ySpan = Math.max(1e-9, Math.max(...losses) - lo);
  line.setAttribute(
    "points",
    points
      .map(([x, y]) => `${(((x - x0) / xSpan) * 118 + 1).toFixed(1)},${(35 - ((y - lo) / ySpan) * 34).toFixed(1)}`)
      .join(" "),
  );
}

function renderCard(style) {
  let card = cards.get(style.id);
  if (!card) {
    card = $("#style-card").content.firstElementChild.cloneNode(true);
    card.dataset.styleId = style.id;
    $(".again", card).addEventListener("click", () => trainAgain(style.id));
    $(".cancel", card).addEventListener("click", () => cancelTraining(style.id));
    $(".delete", card).addEventListener("click", () => removeStyle(style.id));
    cards.set(style.id, card);
  }
  const img = $(".thumb", card);
  const src = thumbUrl(style);
  if (img.getAttribute("src") !== src) img.src = src;
  img.alt = style.links.preview ? `Latest preview of ${style.name}` : `Style image of ${style.name}`;
  $(".name", card).textContent = style.name;
  const badge = $(".badge", card);
  badge.textContent = style.status;
  badge.className = `badge ${style.status}`;
  const training = style.status === "queued" || style.status === "training";
  const train = $(".train", card);
  const bar = $(".bar", card);
  const p = style.progress;
  train.hidden = !(training || (p && style.status === "ready"));
  if (style.status === "ready") {
    bar.value = 1;
    $(".ptext", card).textContent = "done";
  } else if (p) {
    bar.value = p.fraction;
    $(".ptext", card).textContent = `${p.iteration} / ${p.total} · ETA ${fmtSeconds(p.eta_s)}`;
  } else if (training) {
    bar.removeAttribute("value"); // indeterminate while queued
    $(".ptext", card).textContent = style.status === "queued" ? "waiting for a worker" : "starting";
  }
  bar.setAttribute("aria-label", `Training progress of ${style.name}`);
  drawCurve(card, style.id);
  const detail = [style.id];
  if (style.current_version) detail.push(`version ${style.current_version}`);
  if (style.error) detail.push(style.error);
  const loss = lossSummary(style);
  if (loss) detail.push(loss);
  $(".detail", card).textContent = detail.join(" · ");
  $(".again", card).hidden = training;
  $(".again", card).setAttribute("aria-label", `Train ${style.name} again`);
  $(".cancel", card).hidden = !training;
  $(".cancel", card).setAttribute("aria-label", `Cancel training of ${style.name}`);
  $(".delete", card).setAttribute("aria-label", `Delete ${style.name}`);
  return card;
}

function renderList() {
  const list = $("#style-list");
  const sorted = [...styles.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  list.replaceChildren(...sorted.map(renderCard));
  if (!sorted.length) list.innerHTML = '<li class="muted">No styles yet.</li>';
}

function renderGallery() {
  const gallery = $("#gallery");
  const usable = [...styles.values()].filter((s) => s.servable).sort((a, b) => a.name.localeCompare(b.name));
  if (!usable.length) {
    gallery.innerHTML = '<p class="muted">No style is ready yet.</p>';
    return;
  }
  if (!usable.some((s) => s.id === selectedStyle)) selectedStyle = usable[0].id;
  gallery.replaceChildren(
    ...usable.map((s) => {
      const label = document.createElement("label");
      label.className = "tile";
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "style";
      input.value = s.id;
      input.checked = s.id === selectedStyle;
      input.addEventListener("change", () => (selectedStyle = s.id));
      const img = document.createElement("img");
      img.src = thumbUrl(s);
      img.alt = "";
      img.loading = "lazy";
      const name = document.createElement("span");
      name.textContent = s.name;
      label.append(input, img, name);
      return label;
    }),
  );
}

function update(style) {
  const before = styles.get(style.id);
  styles.set(style.id, style);
  const p = style.progress;
  if (p && p.loss != null && !TERMINAL.has(style.status)) {
    const h = history.get(style.id) || [];
    if (!h.length || h[h.length - 1][0] !== p.iteration) h.push([p.iteration, p.loss]);
    history.set(style.id, h.slice(-300));
  }
  if (!cards.has(style.id)) renderList();
  else renderCard(style);
  if (!before || before.servable !== style.servable) renderGallery();
  follow(style);
}

function follow(style) {
  if (TERMINAL.has(style.status) || streams.has(style.id)) return;
  const source = new EventSource(style.links.events);
  streams.set(style.id, source);
  const stop = () => {
    source.close();
    streams.delete(style.id);
  };
  source.addEventListener("style", (e) => update(JSON.parse(e.data)));
  source.addEventListener("end", stop);
  source.addEventListener("deleted", () => {
    stop();
    forget(style.id);
  });
  source.addEventListener("timeout", () => {
    stop();
    api(`/styles/${style.id}`).then((r) => r.json()).then(update).catch(() => {});
  });
  source.onerror = () => {
    // The browser reconnects by itself; a closed stream is replaced by a fresh read.
    if (source.readyState === EventSource.CLOSED) {
      stop();
      setTimeout(() => api(`/styles/${style.id}`).then((r) => r.json()).then(update).catch(() => {}), 2000);
    }
  };
}

function forget(id) {
  styles.delete(id);
  cards.get(id)?.remove();
  cards.delete(id);
  renderList();
  renderGallery();
}

async function loadStyles() {
  const errorEl = $("#styles-error");
  try {
    const found = [];
    let url = "/styles?limit=200";
    for (let page = 0; url && page < 10; page++) {
      const body = await (await api(url)).json();
      found.push(...body.items);
      url = body.next;
    }
    const ids = new Set(found.map((s) => s.id));
    for (const id of [...styles.keys()]) if (!ids.has(id)) forget(id);
    for (const s of found) styles.set(s.id, s);
    renderList();
    renderGallery();
    found.forEach(follow);
    showError(errorEl, null);
  } catch (err) {
    showError(errorEl, err);
    if (!styles.size) $("#gallery").innerHTML = '<p class="muted">Could not load styles.</p>';
  }
}

// A new run with the style's last parameters; its current version serves until the
// run publishes the next one. RQ records the previous job finished a moment after the
// style is ready: the API answers 409 job_exists with Retry-After until then.
async function trainAgain(id, attempts = 5, confirmed = false) {
  if (!confirmed && !(await confirmCost(styles.get(id)?.params ?? {}, "Training it again"))) return;
  try {
    const response = await api(`/styles/${id}/train`, { method: "POST" });
    history.delete(id);
    update(await response.json());
    showError($("#styles-error"), null);
  } catch (err) {
    if (err.code === "job_exists" && attempts > 1) {
      setTimeout(() => trainAgain(id, attempts - 1, true), 1000);
      return;
    }
    showError($("#styles-error"), err);
  }
}

async function cancelTraining(id) {
  const style = styles.get(id);
  const keeps = style.current_version ? ` Version ${style.current_version} goes on serving.` : "";
  if (!confirm(`Stop the training of “${style.name}”?${keeps}`)) return;
  try {
    const response = await api(`/styles/${id}/cancel`, { method: "POST" });
    update(await response.json());
    showError($("#styles-error"), null);
  } catch (err) {
    showError($("#styles-error"), err);
  }
}

async function removeStyle(id) {
  const style = styles.get(id);
  if (!confirm(`Delete “${style.name}”?`)) return;
  try {
    await api(`/styles/${id}`, { method: "DELETE" });
    streams.get(id)?.close();
    streams.delete(id);
    forget(id);
    showError($("#styles-error"), null);
  } catch (err) {
    showError($("#styles-error"), err);
  }
}

$("#refresh").addEventListener("click", loadStyles);

// ------------------------------------------------------------------ stylize
const photoInput = $("#photo");
const drop = $("#drop");
let photo = null;
let resultUrl = null;
let originalUrl = null;

function setPhoto(file) {
  photo = file || null;
  const original = $("#original");
  if (originalUrl) URL.revokeObjectURL(originalUrl);
  originalUrl = null;
  original.hidden = true;
  showError($("#stylize-error"), null);
  if (photo && photo.type.startsWith("image/")) {
    originalUrl = URL.createObjectURL(photo);
    original.onerror = () => {
      original.hidden = true; // not decodable here; the service will say why
      $("#compare").hidden = $("#result").hidden;
    };
    original.src = originalUrl;
    original.hidden = false;
  }
  $("#result").hidden = true; // the previous result belongs to the previous photo
  $("#result-fig").hidden = true;
  $("#download").hidden = true;
  $("#compare").hidden = !originalUrl;
  $("#stylize-status").textContent = photo ? `${photo.name} (${Math.ceil(photo.size / 1024)} KiB)` : "";
}

photoInput.addEventListener("change", () => setPhoto(photoInput.files[0]));
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  if (e.dataTransfer.files.length) setPhoto(e.dataTransfer.files[0]);
});

for (const [input, out, fmt] of [
  ["#strength", "#strength-out", (v) => Number(v).toFixed(2)],
  ["#max-side", "#max-side-out", (v) => v],
]) {
  const sync = () => ($(out).textContent = fmt($(input).value));
  $(input).addEventListener("input", sync);
  sync();
}

$("#stylize-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const errorEl = $("#stylize-error");
  const status = $("#stylize-status");
  showError(errorEl, null);
  if (!photo) return showError(errorEl, new Error("pick a photo first"));
  if (!selectedStyle) return showError(errorEl, new Error("no style is ready"));
  const form = new FormData();
  form.append("image", photo, photo.name);
  form.append("style", selectedStyle);
  form.append("strength", $("#strength").value);
  form.append("max_side", $("#max-side").value);
  form.append("preserve_color", $("#preserve-color").checked ? "true" : "false");
  const button = $("#stylize-btn");
  button.disabled = true;
  status.textContent = "Stylizing…";
  const started = performance.now();
  try {
    const response = await api("/stylize", { method: "POST", body: form });
    const blob = await response.blob();
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = URL.createObjectURL(blob);
    const result = $("#result");
    await new Promise((resolve, reject) => {
      result.onload = resolve;
      result.onerror = () => reject(new Error("the result is not a displayable image"));
      result.src = resultUrl;
    });
    result.hidden = false;
    $("#result-fig").hidden = false;
    $("#compare").hidden = false;
    result.alt = `${photo.name} in the style ${styles.get(selectedStyle)?.name || selectedStyle}`;
    const ext = (blob.type.split("/")[1] || "png").replace("jpeg", "jpg");
    const download = $("#download");
    download.href = resultUrl;
    download.download = `${photo.name.replace(/\.[^.]*$/, "")}-${selectedStyle}.${ext}`;
    download.hidden = false;
    status.textContent = `Done in ${((performance.now() - started) / 1000).toFixed(1)} s: ${result.naturalWidth}×${result.naturalHeight}`;
  } catch (err) {
    status.textContent = "";
    showError(errorEl, err);
  } finally {
    button.disabled = false;
  }
});

// ------------------------------------------------------------------ new style
$("#new-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const errorEl = $("#new-error");
  const status = $("#new-status");
  showError(errorEl, null);
  const file = $("#painting").files[0];
  const name = $("#style-name").value.trim();
  if (!file) return showError(errorEl, new Error("pick a painting first"));
  if (!name) return showError(errorEl, new Error("give the style a name"));
  const advanced = $("#params").value.trim();
  let params = PRESETS[$("#preset").value];
  if (advanced) {
    try {
      params = JSON.parse(advanced);
    } catch (err) {
      return showError(errorEl, new Error(`the advanced parameters are not JSON: ${err.message}`));
    }
  }
  if (!(await confirmCost(params))) return;
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("name", name);
  form.append("params", JSON.stringify(params));
  const button = $("#train-btn");
  button.disabled = true;
  status.textContent = "Uploading…";
  try {
    const style = await (await api("/styles", { method: "POST", body: form })).json();
    status.textContent = `“${style.name}” is queued for training (${style.id}).`;
    update(style);
    $("#new-form").reset();
    cards.get(style.id)?.scrollIntoView({ behavior: "smooth", block: "nearest" });
  } catch (err) {
    status.textContent = "";
    showError(errorEl, err);
  } finally {
    button.disabled = false;
  }
});

// Tests (and people) can open /?tiny to get a seconds-long training in the advanced field.
if (new URLSearchParams(location.search).has("tiny")) {
  $("#advanced").open = true;
  $("#params").value = JSON.stringify({
    iterations: 4, image_size: 64, style_size: 64, batch_size: 1, width: 0.25, holdout: 1, progress_every: 1,
  });
}

loadStyles();
showPresetEstimates($("#preset"), PRESETS);
