// The history of results: each result the service sends this page (Stylize, side by
// side, batch) is kept in this browser's IndexedDB, the images as Blobs, with the style
// and its version, the options sent, the time and a before/after thumbnail pair. It
// survives a reload; a kept result opens again in the result viewer (stylize.js), and
// is downloaded or deleted one by one, or all cleared. Bounded: the newest KEEP results
// within KEEP_BYTES, the oldest going first. Nothing of it is sent anywhere.

import { $, fmtBytes } from "./common.js";
import { styles } from "./styles.js";
import { showResult } from "./stylize.js";
import { resultName } from "./stylize-request.js";

export const KEEP = 30;
export const KEEP_BYTES = 100 * 1024 * 1024;
const DB_NAME = "stylize-history";
const STORE = "results";
const THUMB = 160; // px, a thumbnail's longer side

const list = $("#history-list");
const status = $("#history-status");
let urls = []; // the object URLs of the list as drawn
let openedBefore = null; // the object URL of the "before" of a result opened again

// ------------------------------------------------------------------ IndexedDB
let db = null;
function openDb() {
  db ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return db;
}

/** Run `work(store)` in one transaction; its request's result once committed. */
async function inStore(mode, work) {
  const database = await openDb();
  return new Promise((resolve, reject) => {
    const tx = database.transaction(STORE, mode);
    const request = work(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(request?.result);
    tx.onerror = tx.onabort = () => reject(tx.error);
  });
}

/** Every kept result, oldest first (keys grow). */
export const keptResults = () => inStore("readonly", (store) => store.getAll());

// ------------------------------------------------------------------ what a result was
// "The Scream", or a blend's "The Scream 70 % with Starry Night 30 %".
export function specWords(spec) {
  const parts = spec.split(",").map((part) => part.split(":"));
  const name = (id) => styles.get(id)?.name || id;
  if (parts.length === 1) return name(parts[0][0]);
  const total = parts.reduce((sum, [, w]) => sum + Number(w ?? 1), 0);
  return parts.map(([id, w]) => `${name(id)} ${Math.round((100 * Number(w ?? 1)) / total)} %`).join(" with ");
}

// What was asked and what served it: the spec and versions from the answer's headers.
export function factsOf({ blob, photo, form, response }) {
  const spec = response.headers.get("X-Style-Id") || form.get("style");
  return {
    time: Date.now(),
    photoName: photo.name || "pasted image",
    fileName: resultName(photo.name, form.get("style"), blob),
    style: { spec, words: specWords(spec), version: response.headers.get("X-Style-Version") || "" },
    options: {
      strength: Number(form.get("strength")),
      max_side: Number(form.get("max_side")),
      preserve_color: form.get("preserve_color") === "true",
    },
  };
}

/** One line: the style and version, the options, the time. */
export function describe(facts) {
  const { style, options } = facts;
  const versions = style.version.includes(",") ? `versions ${style.version.replaceAll(",", ", ")}` : `version ${style.version}`;
  const when = new Date(facts.time).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  return [
    style.version ? `${style.words}, ${versions}` : style.words,
    `strength ${options.strength.toFixed(2)}`,
    `up to ${options.max_side} px`,
    ...(options.preserve_color ? ["photo's colours kept"] : []),
    when,
  ].join(" · ");
}

// A JPEG of a decoded image at width × height (over white: a transparent PNG as the
// service reads it).
function jpegOf(bitmap, width, height, quality = 0.85) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, 0, 0, width, height);
  return new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("could not encode an image"))), "image/jpeg", quality),
  );
}

// The record kept: the result as sent, the photo at the result's size (the viewer's
// "before"), and a thumbnail of each. Each image is decoded once.
async function recordOf(detail) {
  const facts = factsOf(detail);
  const after = await createImageBitmap(detail.blob);
  const photo = await createImageBitmap(detail.photo, { imageOrientation: "from-image" });
  try {
    const [width, height] = [after.width, after.height];
    const fit = Math.min(1, THUMB / Math.max(width, height));
    const [tw, th] = [Math.max(1, Math.round(width * fit)), Math.max(1, Math.round(height * fit))];
    const [before, thumbBefore, thumbAfter] = await Promise.all([
      jpegOf(photo, width, height, 0.9),
      jpegOf(photo, tw, th),
      jpegOf(after, tw, th),
    ]);
    const bytes = detail.blob.size + before.size + thumbBefore.size + thumbAfter.size;
    return { ...facts, width, height, bytes, result: detail.blob, before, thumbBefore, thumbAfter };
  } finally {
    after.close();
    photo.close();
  }
}

// ------------------------------------------------------------------ keep, evict, forget
async function evict() {
  const kept = await keptResults();
  let bytes = kept.reduce((sum, r) => sum + r.bytes, 0);
  const gone = [];
  for (const r of kept) {
    if (kept.length - gone.length <= KEEP && bytes <= KEEP_BYTES) break;
    gone.push(r.id);
    bytes -= r.bytes;
  }
  if (gone.length) await inStore("readwrite", (store) => gone.forEach((id) => store.delete(id)));
}

/**
 * Keep a result ({blob, photo, form, response}: what stylizeOnce returns); its id, or
 * null when it could not be kept (the reason is said under the history's heading).
 */
export async function remember(detail) {
  try {
    const record = await recordOf(detail);
    if (record.bytes > KEEP_BYTES / 2) {
      status.textContent = `A result of ${fmtBytes(record.bytes)} is too large to keep here; download it instead.`;
      return null;
    }
    const id = await inStore("readwrite", (store) => store.add(record));
    await evict();
    status.textContent = "";
    await render();
    return id;
  } catch (err) {
    status.textContent = `Could not keep this result in this browser (${err.message}).`;
    return null;
  }
}

async function forget(id) {
  await inStore("readwrite", (store) => store.delete(id));
  await render();
}

async function clearAll() {
  if (!confirm("Delete every kept result from this browser?")) return;
  await inStore("readwrite", (store) => store.clear());
  await render();
  status.textContent = "The history is empty.";
}

// ------------------------------------------------------------------ the list
async function reopen(record) {
  if (openedBefore) URL.revokeObjectURL(openedBefore);
  openedBefore = URL.createObjectURL(record.before);
  const alt = `${record.photoName} in the style of ${record.style.words}`;
  await showResult(record.result, openedBefore, alt, record.fileName);
  $("#result-caption").textContent = `${record.photoName}: ${describe(record)}`;
}

function objectUrl(blob) {
  const url = URL.createObjectURL(blob);
  urls.push(url);
  return url;
}

function item(record) {
  const li = $("#history-item").content.firstElementChild.cloneNode(true);
  const captionId = `history-caption-${record.id}`;
  $(".before", li).src = objectUrl(record.thumbBefore);
  const after = $(".after", li);
  after.src = objectUrl(record.thumbAfter);
  after.alt = `${record.photoName} in the style of ${record.style.words}`;
  $(".name", li).textContent = record.photoName;
  const caption = $(".caption", li);
  caption.id = captionId;
  caption.textContent = `${describe(record)} · ${record.width}×${record.height}, ${fmtBytes(record.result.size)}`;
  const download = $(".download", li);
  download.href = objectUrl(record.result);
  download.download = record.fileName;
  for (const control of li.querySelectorAll(".open, .download, .delete")) {
    control.setAttribute("aria-describedby", captionId);
  }
  $(".open", li).addEventListener("click", () => reopen(record));
  $(".delete", li).addEventListener("click", async () => {
    const next = li.nextElementSibling || li.previousElementSibling;
    const nextId = next?.dataset.id;
    await forget(record.id);
    const target = nextId && list.querySelector(`li[data-id="${nextId}"] .open`);
    (target || $("#history-h")).focus();
  });
  li.dataset.id = record.id;
  return li;
}

async function render() {
  let kept;
  try {
    kept = await keptResults();
  } catch (err) {
    status.textContent = `This browser keeps no history here (${err.message}).`;
    return;
  }
  urls.forEach((url) => URL.revokeObjectURL(url));
  urls = [];
  list.replaceChildren(...kept.reverse().map(item)); // newest first
  $("#history-empty").hidden = kept.length > 0;
  $("#history-clear").hidden = kept.length === 0;
}

// A result of the Stylize button (stylize.js): its caption, and kept.
document.addEventListener("stylize:result", (e) => {
  $("#result-caption").textContent = `${e.detail.photo.name || "pasted image"}: ${describe(factsOf(e.detail))}`;
  remember(e.detail);
});
$("#history-clear").addEventListener("click", clearAll);
$("#history-limit").textContent = `the last ${KEEP}, up to ${KEEP_BYTES / 1024 / 1024} MB`;
render();
