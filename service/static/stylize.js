// Stylize a photo: the photo (picked, dropped or pasted), the options, and the result
// with its before/after slider, zoom, download and copy.

import { $, api, fmtBytes, fmtSeconds, LocalError, showError } from "./common.js";
import { styleSpec, styleWords } from "./blend.js";
import { selectedStyle } from "./styles.js";
import { resultName, stylizeForm } from "./stylize-request.js";
import { isClip, stylizeClip } from "./video.js";

// ------------------------------------------------------------------ stylize: the photo
// Picked, dropped anywhere on the card, or pasted; shown as a thumbnail with its size.
const photoInput = $("#photo");
const dropZone = $("#stylize");
let photo = null;
let resultUrl = null;
let originalUrl = null;

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

/**
 * Show a result in the viewer (before/after frame, zoom, download, copy) and bring it into
 * view; `beforeUrl` is the photo under the slider. history.js opens kept results here.
 */
export async function showResult(blob, beforeUrl, alt, fileName) {
  resultBlob = blob;
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = URL.createObjectURL(resultBlob);
  const result = $("#result");
  await new Promise((resolve, reject) => {
    result.onload = resolve;
    result.onerror = () => reject(new Error("the result is not a displayable image"));
    result.src = resultUrl;
  });
  const original = $("#original");
  original.hidden = !beforeUrl;
  if (beforeUrl) original.src = beforeUrl;
  result.hidden = false;
  frame.style.setProperty("--w", `${result.naturalWidth}px`);
  split.value = 0;
  syncSplit();
  result.alt = alt;
  const download = $("#download");
  download.href = resultUrl;
  download.download = fileName;
  download.hidden = false;
  $("#result-status").textContent = "";
  $("#result-box").hidden = false;
  // Bring the result into view (it is below the form on a laptop and a phone).
  $("#result-box").scrollIntoView({ behavior: "instant", block: "start" });
  $("#result-h").focus({ preventScroll: true });
  return result;
}

$("#stylize-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const errorEl = $("#stylize-error");
  const status = $("#stylize-status");
  showError(errorEl, null);
  if (!photo) return showError(errorEl, new LocalError("Pick a photo first."));
  if (!selectedStyle) return showError(errorEl, new LocalError("No style is ready yet."));
  const form = stylizeForm(photo, styleSpec(selectedStyle)); // the options (stylize-request.js)
  if (isClip(photo)) return stylizeClip(form, photo); // a clip: a job on the worker (video.js)
  // Named, so the service can say how far it has got (GET /stylize/progress/{id}); a
  // cancel aborts the fetch, and the service stops the work between two bands.
  const progressId = crypto.randomUUID?.() ?? `p${Date.now()}${Math.random().toString(36).slice(2)}`;
  form.append("progress_id", progressId.replaceAll(/[^A-Za-z0-9_-]/g, ""));
  const button = $("#stylize-btn");
  button.disabled = true;
  status.textContent = "Stylizing…";
  const started = performance.now();
  const abort = new AbortController();
  const watch = followProgress(form.get("progress_id"), abort, status);
  try {
    const response = await api("/stylize", { method: "POST", body: form, signal: abort.signal });
    const blob = await response.blob();
    const alt = `${photo.name || "Your photo"} in the style of ${styleWords(selectedStyle)}`;
    const result = await showResult(blob, originalUrl, alt, resultName(photo.name, form.get("style"), blob));
    status.textContent = `Done in ${((performance.now() - started) / 1000).toFixed(1)} s: ${result.naturalWidth}×${result.naturalHeight}`;
    // Kept in this browser's history of results, with its caption (history.js).
    document.dispatchEvent(new CustomEvent("stylize:result", { detail: { blob, photo, form, response } }));
  } catch (err) {
    status.textContent = abort.signal.aborted ? "Canceled." : "";
    if (!abort.signal.aborted) showError(errorEl, err);
  } finally {
    watch.stop();
    button.disabled = false;
  }
});

// Poll the request's progress while it runs: a bar for a large photo's bands (the
// tiled lane), "Stylizing…" for a small one; the cancel button aborts the request.
function followProgress(id, abort, status) {
  const box = $("#stylize-progress");
  const bar = $("#stylize-bar");
  const cancel = $("#stylize-cancel");
  let timer = null;
  let stopped = false;
  const onCancel = () => {
    abort.abort();
    // Also tell the service, in case the aborted connection is not noticed at once.
    fetch(`/stylize/progress/${id}`, { method: "DELETE" }).catch(() => {});
  };
  cancel.addEventListener("click", onCancel);
  bar.removeAttribute("value");
  const poll = async () => {
    try {
      const response = await fetch(`/stylize/progress/${id}`);
      if (response.ok && !stopped) {
        const p = await response.json();
        if (p.bands_total) {
          box.hidden = false;
          bar.value = p.fraction ?? 0;
          const left = p.eta_s == null ? "" : ` · about ${fmtSeconds(p.eta_s)} left`;
          status.textContent = `Stylizing in tiles: ${Math.round((p.fraction ?? 0) * 100)} %${left}`;
        } else if (p.state === "waiting") {
          box.hidden = false;
          status.textContent = "Waiting for another large photo to finish…";
        }
      }
    } catch {
      /* the result is what matters; progress is a courtesy */
    }
    if (!stopped) timer = setTimeout(poll, 700);
  };
  timer = setTimeout(poll, 300);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      cancel.removeEventListener("click", onCancel);
      box.hidden = true;
    },
  };
}
