// "Stylize on this device": the chosen photo stylized in this browser, never uploaded.
// The style's ONNX model (GET /styles/{id}/export, float16 weights) is downloaded once and
// kept in the Cache API under its sha256 (the export's ETag, checked against the bytes);
// ondevice-worker.js runs it with onnxruntime-web (WebGPU or WASM). The only requests
// are the model's (HEAD, then GET when not cached) and the runtime's own files. The
// button appears only when the service has onnxruntime-web (service/webvendor.py).
// This module builds its own controls next to the Stylize button and its own result box.

import { $, api, LocalError, showError } from "./common.js";
import { selectedStyle } from "./styles.js";

/** The longest side stylized here: a 1024² forward takes ~1 GB of WASM memory. */
export const MAX_SIDE = 1024;
const PROBE = "/static/vendor/onnxruntime-web/ort.wasm.min.mjs";
const CACHE = "stylize-onnx-models";
let worker = null;
let resultUrl = null;

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function buildControls() {
  const box = el("div", { id: "ondevice", className: "ondevice" }, [
    el("button", { id: "ondevice-btn", type: "button", textContent: "Stylize on this device" }),
    el("p", {
      id: "ondevice-note",
      className: "help",
      textContent:
        "Runs in this browser: your photo stays on this device (only the style's model is " +
        `downloaded, once). Up to ${MAX_SIDE} px on the longer side here; larger photos are ` +
        "scaled down (the server stylizes up to 8192 px).",
    }),
    el("p", { id: "ondevice-status", className: "muted" }),
    el("p", { id: "ondevice-error", className: "error", hidden: true }),
  ]);
  $("#ondevice-status", box).setAttribute("role", "status");
  $("#ondevice-status", box).setAttribute("aria-live", "polite");
  $("#ondevice-error", box).setAttribute("role", "alert");
  $("#ondevice-btn", box).setAttribute("aria-describedby", "ondevice-note");
  $("#stylize-btn").after(box);
  const result = el("div", { id: "ondevice-result", className: "result-box", hidden: true }, [
    el("h3", { id: "ondevice-h", tabIndex: -1, textContent: "Result on this device" }),
    el("img", { id: "ondevice-img", alt: "" }),
    el("div", { className: "result-actions" }, [
      el("a", { id: "ondevice-download", className: "button", textContent: "Download" }),
    ]),
  ]);
  $("#result-box").after(result);
  Object.assign($("#ondevice-img").style, { maxWidth: "100%", height: "auto" }); // CSSOM: CSP-safe
  $("#ondevice-btn").addEventListener("click", () => run().catch(() => {}));
}

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");

async function modelFor(styleId, say) {
  const url = `/styles/${encodeURIComponent(styleId)}/export?format=onnx&dtype=float16`;
  const cache = globalThis.caches ? await caches.open(CACHE) : null;
  const head = await api(url, { method: "HEAD" });
  const sha = (head.headers.get("ETag") || "").replaceAll('"', "");
  const hit = cache && sha ? await cache.match(`/onnx-models/${sha}`) : null;
  if (hit) return { model: await hit.arrayBuffer(), sha, cached: true };
  say("Downloading the style's model (once; kept in this browser)…");
  const response = await api(url);
  const model = await response.arrayBuffer();
  const expected = (response.headers.get("ETag") || "").replaceAll('"', "");
  const actual = crypto.subtle ? hex(await crypto.subtle.digest("SHA-256", model)) : expected;
  if (actual !== expected) throw new LocalError("The model arrived damaged (its sha256 differs); try again.");
  if (cache) await cache.put(`/onnx-models/${actual}`, new Response(model.slice(0)));
  return { model, sha: actual, cached: false };
}

async function photoPixels(file) {
  // As the service reads a photo: EXIF orientation applied, no colour profile applied,
  // transparency over white; scaled down to fit the limit and the page's max size.
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image", colorSpaceConversion: "none" });
  const limit = Math.min(MAX_SIDE, Number($("#max-side")?.value) || MAX_SIDE);
  const scale = Math.min(1, limit / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = el("canvas", { width, height });
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  const planes = new Float32Array(3 * width * height);
  const area = width * height;
  for (let i = 0; i < area; i++) {
    planes[i] = rgba[4 * i];
    planes[area + i] = rgba[4 * i + 1];
    planes[2 * area + i] = rgba[4 * i + 2];
  }
  return { planes, width, height, scaled: scale < 1 };
}

// Strength and colour preservation, as stylenet.inference.blend does (BT.601 YCbCr).
function toImageData(stylized, content, width, height) {
  const strength = Number($("#strength")?.value ?? 1);
  const keepColour = Boolean($("#preserve-color")?.checked);
  const area = width * height;
  const out = new ImageData(width, height);
  for (let i = 0; i < area; i++) {
    let [r, g, b] = [stylized[i], stylized[area + i], stylized[2 * area + i]];
    const [cr, cg, cb] = [content[i], content[area + i], content[2 * area + i]];
    if (keepColour) {
      const y = 0.299 * r + 0.587 * g + 0.114 * b;
      const u = -0.168736 * cr - 0.331264 * cg + 0.5 * cb;
      const v = 0.5 * cr - 0.418688 * cg - 0.081312 * cb;
      [r, g, b] = [y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u];
    }
    if (strength < 1) [r, g, b] = [cr + strength * (r - cr), cg + strength * (g - cg), cb + strength * (b - cb)];
    // Uint8ClampedArray clamps and rounds half to even, as the service's uint8 output.
    out.data.set([r, g, b, 255], 4 * i);
  }
  return out;
}

function runInWorker(message) {
  worker ??= new Worker("/static/ondevice-worker.js", { type: "module" });
  return new Promise((resolve, reject) => {
    worker.onmessage = ({ data }) => (data.ok ? resolve(data) : reject(new LocalError(`On this device: ${data.message}`)));
    worker.onerror = (event) => reject(new LocalError(`On this device: ${event.message || "the worker failed"}`));
    worker.postMessage(message);
  });
}

async function run() {
  const status = $("#ondevice-status");
  const errorEl = $("#ondevice-error");
  const button = $("#ondevice-btn");
  showError(errorEl, null);
  const file = $("#photo").files?.[0];
  try {
    if (!file) throw new LocalError("Pick a photo first.");
    if (!selectedStyle) throw new LocalError("No style is ready yet.");
    if ($("#blend")?.open && $("#blend-style")?.value) throw new LocalError("Blends run on the server: close “Blend” to stylize on this device.");
    button.disabled = true;
    const started = performance.now();
    status.textContent = "Preparing…";
    const { model, sha, cached } = await modelFor(selectedStyle, (text) => (status.textContent = text));
    const { planes, width, height, scaled } = await photoPixels(file);
    status.textContent = "Stylizing on this device…";
    const done = await runInWorker({ model, sha256: sha, pixels: planes.slice(), width, height });
    const canvas = el("canvas", { width, height });
    canvas.getContext("2d").putImageData(toImageData(done.pixels, planes, width, height), 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = URL.createObjectURL(blob);
    const img = $("#ondevice-img");
    await new Promise((resolve) => {
      img.onload = resolve;
      img.src = resultUrl;
    });
    img.alt = `${file.name || "Your photo"}, stylized on this device`;
    const download = $("#ondevice-download");
    download.href = resultUrl;
    download.download = `${(file.name || "photo").replace(/\.[^.]*$/, "")}-${selectedStyle}-on-device.png`;
    $("#ondevice-result").hidden = false;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    status.textContent =
      `Done on this device in ${seconds} s (${done.provider}; the network itself ${(done.runMs / 1000).toFixed(1)} s` +
      `${cached ? ", model from this browser's cache" : ""}): ${width}×${height}` +
      `${scaled ? `, scaled down to ${MAX_SIDE} px` : ""}. Your photo was not uploaded.`;
    $("#ondevice-result").scrollIntoView({ behavior: "instant", block: "start" });
    $("#ondevice-h").focus({ preventScroll: true });
  } catch (err) {
    status.textContent = "";
    showError(errorEl, err);
  } finally {
    button.disabled = false;
  }
}

async function offered() {
  if (typeof Worker === "undefined" || typeof WebAssembly === "undefined") return false;
  try {
    return (await fetch(PROBE, { method: "HEAD" })).ok;
  } catch {
    return false;
  }
}

// Not awaited at the top: the rest of the page must not wait for this probe.
offered().then((yes) => yes && buildControls());
