// Clips (issue 29): a clip picked or dropped on the photo card is stylized by a job on
// the worker (POST /videos), its progress followed on the job's event stream
// (GET /videos/{id}/events), and the result played beside the original: <video>
// elements, or <img> for a GIF or WebP. stylize.js hands the clip over here.

import { $, api, LocalError, showError } from "./common.js";

const CLIP_NAME = /\.(mp4|m4v|mov|webm|mkv|gif)$/i;

/** Whether `file` goes the clip way: any video, any GIF (the service treats GIFs as clips). */
export function isClip(file) {
  if (!file) return false;
  return file.type.startsWith("video/") || file.type === "image/gif" || CLIP_NAME.test(file.name || "");
}

const isMoving = (type) => type.startsWith("video/");
let originalUrl = null;

// The clip viewer, made once under the photo's result box: original and result side by side.
function viewer() {
  let box = $("#clip-box");
  if (box) return box;
  box = document.createElement("div");
  box.id = "clip-box";
  box.className = "clip-box";
  box.hidden = true;
  box.innerHTML = `
    <h3 id="clip-h" tabindex="-1">Clip</h3>
    <div class="clip-pair">
      <figure><div class="clip-slot" id="clip-original"></div><figcaption>Original</figcaption></figure>
      <figure><div class="clip-slot" id="clip-result"></div><figcaption>Stylized</figcaption></figure>
    </div>
    <p id="clip-status" class="muted" role="status" aria-live="polite"></p>
    <a id="clip-download" class="button" download hidden>Download</a>`;
  $("#result-box").after(box);
  return box;
}

// A <video> (looping, muted so it may play by itself) or an <img> showing `url`.
function player(url, type, label) {
  const el = document.createElement(isMoving(type) ? "video" : "img");
  if (el instanceof HTMLVideoElement) {
    Object.assign(el, { controls: true, muted: true, loop: true, autoplay: true, playsInline: true });
  } else {
    el.alt = label;
  }
  el.setAttribute("aria-label", label);
  el.src = url;
  return el;
}

/**
 * Stylize the clip `file` through a job: `form` is the page's stylize form (the clip in
 * it, the style and options), sent as is to POST /videos. Resolves when the job ends.
 */
export async function stylizeClip(form, file) {
  const status = $("#stylize-status");
  const errorEl = $("#stylize-error");
  const button = $("#stylize-btn");
  const progress = $("#stylize-progress");
  const bar = $("#stylize-bar");
  const cancel = $("#stylize-cancel");
  const box = viewer();
  $("#result-box").hidden = true;
  if (originalUrl) URL.revokeObjectURL(originalUrl);
  originalUrl = URL.createObjectURL(file);
  $("#clip-original").replaceChildren(player(originalUrl, file.type || "video/mp4", `Original clip: ${file.name}`));
  $("#clip-result").replaceChildren();
  $("#clip-download").hidden = true;
  box.hidden = false;
  button.disabled = true;
  status.textContent = "Uploading the clip…";
  let id = null;
  const onCancel = () => id && api(`/videos/${id}`, { method: "DELETE" }).catch(() => {});
  cancel.addEventListener("click", onCancel);
  try {
    const response = await api("/videos", { method: "POST", body: form });
    const job = await response.json();
    id = job.id;
    box.dataset.clipId = id;
    bar.removeAttribute("value");
    progress.hidden = false;
    const end = await follow(id, (doc) => {
      const { done, total, fraction } = doc.progress;
      if (fraction != null) bar.value = fraction;
      status.textContent =
        doc.state === "queued"
          ? "Waiting for the worker…"
          : `Stylizing the clip: ${done}${total ? ` of ${total}` : ""} frames`;
    });
    if (end.state === "done") {
      const result = end.result;
      const el = player(result.url, result.media_type, `${file.name} stylized`);
      $("#clip-result").replaceChildren(el);
      const download = $("#clip-download");
      download.href = result.url;
      download.download = `${file.name.replace(/\.[^.]*$/, "")}-stylized.${result.format}`;
      download.hidden = false;
      status.textContent = `Done: ${result.frames} frames, ${result.width}×${result.height}`;
      $("#clip-h").focus({ preventScroll: true });
      box.scrollIntoView({ behavior: "instant", block: "start" });
    } else if (end.state === "canceled") {
      status.textContent = "Canceled.";
    } else {
      status.textContent = "";
      const message = end.error?.message || `the job ended ${end.state}`;
      showError(errorEl, new LocalError(`The clip could not be stylized: ${message}`));
    }
  } catch (err) {
    status.textContent = "";
    showError(errorEl, err);
  } finally {
    cancel.removeEventListener("click", onCancel);
    progress.hidden = true;
    button.disabled = false;
  }
}

// Follow the job's event stream until it ends; resolve with its last document.
function follow(id, onDoc) {
  return new Promise((resolve, reject) => {
    const source = new EventSource(`/videos/${id}/events`);
    let last = null;
    source.addEventListener("video", (e) => {
      last = JSON.parse(e.data);
      onDoc(last);
    });
    source.addEventListener("end", () => {
      source.close();
      resolve(last);
    });
    source.addEventListener("deleted", () => {
      source.close();
      reject(new LocalError("The clip job was deleted."));
    });
    // "timeout" ends a long stream; EventSource reconnects by itself after `retry`.
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) reject(new LocalError("Lost the clip job's progress."));
    };
  });
}
