// stylize web page: plain ES module, public HTTP API only, same origin, no dependencies.

import { confirmCost, showSpeedEstimates } from "./estimate.js";

const $ = (sel, root = document) => root.querySelector(sel);

// The page's training speeds; "preset" is the API's word for the loss recipe.
const SPEEDS = {
  draft: { iterations: 300, image_size: 128, width: 0.5 },
  balanced: { iterations: 2000, image_size: 256 },
  best: { iterations: 6000, image_size: 256, style_size: 384 },
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

// A mistake found on the page before any request (no file picked, bad JSON).
class LocalError extends Error {}

function readable(err) {
  if (err instanceof ApiError) {
    const hint = HINTS[err.status];
    return hint ? `${hint}: ${err.message}` : err.message;
  }
  if (err instanceof LocalError) return err.message;
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
const cards = new Map(); // id -> <li>
let selectedStyle = null;

function fmtSeconds(s) {
  if (s == null || !isFinite(s)) return "—";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function withRevision(link, style) {
  return `${link}?r=${style.revision}`;
}

// The card's picture: the running training's latest preview, else the style's picture
// (a preview of the version that serves), else the painting itself.
function cardPicture(style) {
  const training = style.status === "queued" || style.status === "training";
  const link = (training && style.links.training_preview) || style.links.preview || style.links.style_image;
  return withRevision(link, style);
}

function lossSummary(style) {
  const m = style.metrics || {};
  const pick = m.holdout_loss && Object.keys(m.holdout_loss).length ? m.holdout_loss : m.final_train_loss;
  if (!pick) return "";
  const total = pick.total ?? Object.values(pick).reduce((a, b) => a + (Number(b) || 0), 0);
  return Number.isFinite(total) ? `final loss ${Number(total).toPrecision(3)}` : "";
}

// The quality score (r: 1 = as good as image optimization on the same loss), measured
// after the style is published; "at most" where it is an upper bound.
function scoreSummary(style) {
  const score = (style.metrics || {}).score;
  if (!score) return "";
  if (score.status === "scoring") return "quality score: scoring…";
  if (score.status !== "done" || !Number.isFinite(score.r_mean)) return "";
  const bound = score.bound === "upper" ? "at most " : "";
  const photos = score.photos === "evaluation" ? "" : " (on your own photos)";
  return `quality score ${bound}${Number(score.r_mean).toFixed(2)}${photos}`;
}

function startSummary(style) {
  const init = (style.metrics || {}).init;
  if (!init) return "";
  if (init.kind === "base") return "adapted from the base generator";
  if (init.kind === "continue") return `continued from version ${init.version}`;
  if (init.kind === "style") return `started from style ${init.style_id}`;
  return "trained from scratch";
}

// The run's training loss against the step (stored with the style, so it survives a
// reload), scaled to the box (min at the bottom).
function drawCurve(card, style) {
  const points = style.loss_history || [];
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

function openViewer(title, src, alt) {
  $("#viewer-title").textContent = title;
  const img = $("#viewer-img");
  img.src = src;
  img.alt = alt;
  $("#viewer").showModal();
}

function renderCard(style) {
  let card = cards.get(style.id);
  if (!card) {
    card = $("#style-card").content.firstElementChild.cloneNode(true);
    card.dataset.styleId = style.id;
    $(".again", card).addEventListener("click", () => trainAgain(style.id));
    $(".cancel", card).addEventListener("click", () => cancelTraining(style.id));
    $(".delete", card).addEventListener("click", () => removeStyle(style.id));
    $(".thumb-btn", card).addEventListener("click", () => {
      const img = $(".thumb", card);
      openViewer(styles.get(style.id)?.name || style.name, img.src, img.alt);
    });
    cards.set(style.id, card);
  }
  const training = style.status === "queued" || style.status === "training";
  const img = $(".thumb", card);
  const src = cardPicture(style);
  if (img.getAttribute("src") !== src) img.src = src;
  const what = src.includes("/training-preview")
    ? "Latest training preview"
    : style.links.preview
      ? "Preview"
      : "Painting";
  img.alt = `${what} of ${style.name}`;
  $(".thumb-btn", card).setAttribute("aria-label", `Enlarge: ${what.toLowerCase()} of ${style.name}`);
  $(".name", card).textContent = style.name;
  const badge = $(".badge", card);
  // The state reads "ready · v1 (retrain canceled)" for a style whose retrain stopped:
  // it still serves, so it looks ready, not broken.
  badge.textContent = style.state || style.status;
  badge.className = `badge ${training || !style.servable ? style.status : "ready"}`;
  const train = $(".train", card);
  const bar = $(".bar", card);
  const p = style.progress;
  // A ready style has no progress (cleared at publish): show the curve seen while it trained.
  train.hidden = !(training || ((style.loss_history || []).length > 0 && style.status === "ready"));
  if (style.status === "ready") {
    bar.value = 1;
    $(".ptext", card).textContent = "done";
  } else if (p) {
    bar.value = p.fraction;
    $(".ptext", card).textContent = `step ${p.iteration} of ${p.total} · ${fmtSeconds(p.eta_s)} left`;
  } else if (training) {
    bar.removeAttribute("value"); // indeterminate while queued
    $(".ptext", card).textContent = style.status === "queued" ? "waiting for a worker" : "starting";
  }
  bar.setAttribute("aria-label", `Training progress of ${style.name}`);
  drawCurve(card, style);
  $(".error-text", card).textContent = style.error || "";
  $(".error-text", card).hidden = !style.error;
  // Ids, versions and loss values are for the curious: inside "Details".
  const detail = [`id ${style.id}`];
  if (style.current_version) detail.push(`version ${style.current_version}`);
  detail.push(`run: ${style.status}`);
  const score = scoreSummary(style);
  if (score) detail.push(score);
  const start = startSummary(style);
  if (start) detail.push(start);
  const loss = lossSummary(style);
  if (loss) detail.push(loss);
  const photos = style.metrics?.content_images;
  if (photos) detail.push(`trained on ${photos} photos`);
  $(".detail", card).textContent = detail.join(" · ");
  $(".more summary", card).setAttribute("aria-label", `Details of ${style.name}`);
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

// A tile shows the painting; its preview (the style on a photo) sits in the corner and
// grows on hover or focus.
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
      const painting = document.createElement("img");
      painting.className = "painting";
      painting.src = withRevision(s.links.style_image, s);
      painting.alt = "";
      painting.loading = "lazy";
      const name = document.createElement("span");
      name.textContent = s.name;
      label.append(input, painting);
      if (s.links.preview) {
        const preview = document.createElement("img");
        preview.className = "preview";
        preview.src = withRevision(s.links.preview, s);
        preview.alt = "";
        preview.loading = "lazy";
        label.append(preview);
      }
      label.append(name);
      return label;
    }),
  );
}

// ------------------------------------------------------------------ finished trainings
// When a training ends while the page is in the background: the title says so, and a
// browser notification too if the user asked for one (and allowed it).
const baseTitle = document.title;

function announceEnd(before, style) {
  const wasRunning = before && (before.status === "queued" || before.status === "training");
  if (!wasRunning || !TERMINAL.has(style.status)) return;
  const word = style.status === "ready" ? "is ready" : style.status === "failed" ? "failed" : "was canceled";
  const text = `“${style.name}” ${word}`;
  if (document.hidden) document.title = `${style.status === "ready" ? "✓" : "✗"} ${text} · ${baseTitle}`;
  if ($("#notify").checked && "Notification" in window && Notification.permission === "granted") {
    try {
      new Notification("stylize", { body: text });
    } catch {
      /* some browsers allow notifications only from a service worker: the title says it */
    }
  }
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) document.title = baseTitle;
});
$("#notify").addEventListener("change", () => {
  if ($("#notify").checked && "Notification" in window && Notification.permission === "default") {
    Notification.requestPermission();
  }
});

function update(style) {
  const before = styles.get(style.id);
  styles.set(style.id, style);
  if (!cards.has(style.id)) renderList();
  else renderCard(style);
  if (!before || before.servable !== style.servable || before.links.preview !== style.links.preview) renderGallery();
  announceEnd(before, style);
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

// ------------------------------------------------------------------ stylize: the photo
// Picked, dropped anywhere on the card, or pasted; shown as a thumbnail with its size.
const photoInput = $("#photo");
const dropZone = $("#stylize");
let photo = null;
let resultUrl = null;
let originalUrl = null;

function fmtBytes(n) {
  return n < 1024 * 1024 ? `${Math.ceil(n / 1024)} KB` : `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function setPhoto(file, fromInput = false) {
  photo = file || null;
  if (originalUrl) URL.revokeObjectURL(originalUrl);
  originalUrl = null;
  showError($("#stylize-error"), null);
  if (photo && !fromInput) {
    // Dropped or pasted: the file input shows it too (not "No file chosen").
    try {
      const transfer = new DataTransfer();
      transfer.items.add(photo);
      photoInput.files = transfer.files;
    } catch {
      /* an old browser: the thumbnail below still says what was chosen */
    }
  }
  const info = $("#photo-info");
  const thumb = $("#photo-thumb");
  info.hidden = !photo;
  $("#result-box").hidden = true; // the previous result belongs to the previous photo
  $("#stylize-status").textContent = "";
  if (!photo) return;
  const meta = `${photo.name || "pasted image"} · ${fmtBytes(photo.size)}`;
  $("#photo-meta").textContent = meta;
  if (photo.type.startsWith("image/")) {
    originalUrl = URL.createObjectURL(photo);
    thumb.onload = () => ($("#photo-meta").textContent = `${meta} · ${thumb.naturalWidth}×${thumb.naturalHeight}`);
    thumb.onerror = () => (thumb.hidden = true); // not decodable here; the service will say why
    thumb.hidden = false;
    thumb.src = originalUrl;
    thumb.alt = `Chosen photo: ${photo.name || "pasted image"}`;
  } else {
    thumb.hidden = true;
  }
}

photoInput.addEventListener("change", () => setPhoto(photoInput.files[0], true));
for (const name of ["dragenter", "dragover"]) {
  dropZone.addEventListener(name, (e) => {
    if (![...(e.dataTransfer?.types || [])].includes("Files")) return;
    e.preventDefault();
    dropZone.classList.add("over");
  });
}
dropZone.addEventListener("dragleave", (e) => {
  if (!dropZone.contains(e.relatedTarget)) dropZone.classList.remove("over");
});
dropZone.addEventListener("drop", (e) => {
  dropZone.classList.remove("over");
  if (!e.dataTransfer?.files.length) return;
  e.preventDefault();
  setPhoto(e.dataTransfer.files[0]);
});
document.addEventListener("paste", (e) => {
  if (e.target.closest?.("input[type=text], input[type=password], textarea")) return;
  const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
  if (!file) return;
  e.preventDefault();
  setPhoto(file);
  dropZone.scrollIntoView({ block: "nearest" });
});

$("#print-size").addEventListener("change", () => {
  $("#max-side").disabled = $("#print-size").checked;
});

for (const [input, out, fmt] of [
  ["#strength", "#strength-out", (v) => Number(v).toFixed(2)],
  ["#max-side", "#max-side-out", (v) => v],
]) {
  const sync = () => ($(out).textContent = fmt($(input).value));
  $(input).addEventListener("input", sync);
  sync();
}

// ------------------------------------------------------------------ stylize: the result
// One frame: the result, with the original over it up to the before/after slider.
const frame = $("#frame");
const split = $("#split");
const syncSplit = () => frame.style.setProperty("--split", `${split.value}%`);
split.addEventListener("input", syncSplit);

$("#zoom").addEventListener("click", () => {
  const actual = frame.classList.toggle("actual");
  $("#zoom").setAttribute("aria-pressed", String(actual));
  $("#zoom").textContent = actual ? "Fit to screen" : "Zoom 1:1";
});

async function pngOf(blob) {
  if (blob.type === "image/png") return blob;
  const bitmap = await createImageBitmap(blob);
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  return await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

let resultBlob = null;
$("#copy").addEventListener("click", async () => {
  const status = $("#result-status");
  try {
    await navigator.clipboard.write([new ClipboardItem({ "image/png": pngOf(resultBlob) })]);
    status.textContent = "Copied to the clipboard.";
  } catch (err) {
    status.textContent = `Could not copy (${err.message}); use Download instead.`;
  }
});

$("#stylize-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const errorEl = $("#stylize-error");
  const status = $("#stylize-status");
  showError(errorEl, null);
  if (!photo) return showError(errorEl, new LocalError("Pick a photo first."));
  if (!selectedStyle) return showError(errorEl, new LocalError("No style is ready yet."));
  const form = new FormData();
  form.append("image", photo, photo.name || "pasted.png");
  form.append("style", selectedStyle);
  form.append("strength", $("#strength").value);
  // Print size: up to 8192 px; the service stylizes large images by exact tiled inference.
  form.append("max_side", $("#print-size").checked ? "8192" : $("#max-side").value);
  form.append("preserve_color", $("#preserve-color").checked ? "true" : "false");
  const button = $("#stylize-btn");
  button.disabled = true;
  status.textContent = "Stylizing…";
  const started = performance.now();
  try {
    const response = await api("/stylize", { method: "POST", body: form });
    resultBlob = await response.blob();
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = URL.createObjectURL(resultBlob);
    const result = $("#result");
    await new Promise((resolve, reject) => {
      result.onload = resolve;
      result.onerror = () => reject(new Error("the result is not a displayable image"));
      result.src = resultUrl;
    });
    const original = $("#original");
    original.hidden = !originalUrl;
    if (originalUrl) original.src = originalUrl;
    result.hidden = false;
    frame.style.setProperty("--w", `${result.naturalWidth}px`);
    split.value = 0;
    syncSplit();
    const styleName = styles.get(selectedStyle)?.name || selectedStyle;
    result.alt = `${photo.name || "Your photo"} in the style of ${styleName}`;
    const ext = (resultBlob.type.split("/")[1] || "png").replace("jpeg", "jpg");
    const download = $("#download");
    download.href = resultUrl;
    download.download = `${(photo.name || "photo").replace(/\.[^.]*$/, "")}-${selectedStyle}.${ext}`;
    download.hidden = false;
    $("#result-status").textContent = "";
    $("#result-box").hidden = false;
    status.textContent = `Done in ${((performance.now() - started) / 1000).toFixed(1)} s: ${result.naturalWidth}×${result.naturalHeight}`;
    // Bring the result into view (it is below the form on a laptop and a phone).
    $("#result-box").scrollIntoView({ behavior: "instant", block: "start" });
    $("#result-h").focus({ preventScroll: true });
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
  if (!file) return showError(errorEl, new LocalError("Pick a painting first."));
  if (!name) return showError(errorEl, new LocalError("Give the style a name."));
  const advanced = $("#params").value.trim();
  let params = SPEEDS[$("#speed").value];
  if (advanced) {
    try {
      params = JSON.parse(advanced);
    } catch (err) {
      return showError(errorEl, new LocalError(`The training parameters are not JSON: ${err.message}`));
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
    const notify = $("#notify").checked; // a wish for every training, not for this form
    $("#new-form").reset();
    $("#notify").checked = notify;
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
showSpeedEstimates($("#speed"), SPEEDS, "draft", $("#speed-estimate"));
