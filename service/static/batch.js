// Several photos at once: chosen together or dropped together anywhere on the stylize
// card, stylized with the style and options chosen above, CONCURRENCY at a time, each
// with its own state (waiting, stylizing, done, failed and why); then "Download all",
// one zip (zip.js) of every result that came back. Stop ends what is left. Each result
// is kept in the history too (history.js).

import { $, LocalError, showError } from "./common.js";
import { styleSpec } from "./blend.js";
import { factsOf, remember } from "./history.js";
import { selectedStyle } from "./styles.js";
import { stylizeOnce } from "./stylize-request.js";
import { zipBlob } from "./zip.js";

const CONCURRENCY = 2;
const box = $("#batch");
const input = $("#batch-photos");
const go = $("#batch-go");
const stop = $("#batch-stop");
const zipLink = $("#batch-zip");
const status = $("#batch-status");
const list = $("#batch-list");
let photos = [];
let urls = [];
let abort = null;

function release() {
  urls.forEach((url) => URL.revokeObjectURL(url));
  urls = [];
}

// The photos of the next batch, one line each.
function choose(files) {
  photos = [...files];
  release();
  zipLink.hidden = true;
  showError($("#batch-error"), null);
  list.replaceChildren(
    ...photos.map((photo) => {
      const li = $("#batch-item").content.firstElementChild.cloneNode(true);
      $(".name", li).textContent = photo.name || "pasted image";
      $(".state", li).textContent = "waiting";
      return li;
    }),
  );
  status.textContent = photos.length ? `${photos.length} photos chosen.` : "";
}

function mark(li, state, text) {
  li.dataset.state = state;
  $(".state", li).textContent = text;
}

function summary(done, failed, total) {
  const parts = [`${done} of ${total} done`];
  if (failed) parts.push(`${failed} failed`);
  return parts.join(", ");
}

async function run() {
  const errorEl = $("#batch-error");
  showError(errorEl, null);
  if (!photos.length) return showError(errorEl, new LocalError("Choose or drop some photos first."));
  if (!selectedStyle) return showError(errorEl, new LocalError("No style is ready yet."));
  const spec = styleSpec(selectedStyle);
  const items = [...list.children];
  const results = []; // {name, blob, time}, in the photos' order
  let [next, done, failed] = [0, 0, 0];
  abort = new AbortController();
  release();
  items.forEach((li) => mark(li, "waiting", "waiting"));
  zipLink.hidden = true;
  go.disabled = true;
  stop.hidden = false;
  status.textContent = summary(0, 0, photos.length);

  const work = async () => {
    while (next < photos.length && !abort.signal.aborted) {
      const index = next++;
      const li = items[index];
      mark(li, "running", "stylizing…");
      try {
        const detail = await stylizeOnce(photos[index], spec, abort.signal);
        const facts = factsOf(detail);
        const url = URL.createObjectURL(detail.blob);
        urls.push(url);
        const thumb = $("img", li);
        thumb.src = url;
        thumb.alt = `${facts.photoName} in the style of ${facts.style.words}`;
        thumb.hidden = false;
        results[index] = { name: facts.fileName, blob: detail.blob, time: new Date(facts.time) };
        mark(li, "done", `done · ${detail.response.headers.get("X-Image-Size")?.replace("x", "×") ?? ""}`);
        done++;
        remember(detail);
      } catch (err) {
        if (abort.signal.aborted) {
          mark(li, "stopped", "stopped");
        } else {
          const why = document.createElement("span");
          showError(why, err);
          mark(li, "failed", `failed: ${why.textContent}`);
          failed++;
        }
      }
      status.textContent = summary(done, failed, photos.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, photos.length) }, work));
  items.filter((li) => li.dataset.state === "waiting").forEach((li) => mark(li, "stopped", "not started"));
  go.disabled = false;
  stop.hidden = true;
  const stopped = abort.signal.aborted ? " (stopped)" : "";
  status.textContent = `${summary(done, failed, photos.length)}${stopped}.`;
  const kept = uniqueNames(results.filter(Boolean));
  if (!kept.length) return;
  try {
    const zip = await zipBlob(kept);
    const url = URL.createObjectURL(zip);
    urls.push(url);
    zipLink.href = url;
    zipLink.download = `stylized-${kept.length}-photos.zip`;
    zipLink.textContent = `Download all (${kept.length} in a zip)`;
    zipLink.hidden = false;
  } catch (err) {
    showError(errorEl, new LocalError(`Could not make the zip: ${err.message}`));
  }
}

// Two photos of the same name get -2, -3… before the extension.
function uniqueNames(files) {
  const seen = new Set();
  return files.map((file) => {
    let name = file.name;
    for (let n = 2; seen.has(name); n++) name = file.name.replace(/(\.[^.]*)?$/, `-${n}$1`);
    seen.add(name);
    return { ...file, name };
  });
}

input.addEventListener("change", () => choose(input.files));
go.addEventListener("click", () => run());
stop.addEventListener("click", () => abort?.abort());

// Several files dropped on the stylize card are a batch (one is the single photo,
// stylize.js): taken before the card's own handler sees them.
document.addEventListener(
  "drop",
  (e) => {
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length < 2 || !e.target.closest?.("#stylize")) return;
    e.preventDefault();
    e.stopPropagation();
    $("#stylize").classList.remove("over");
    try {
      const transfer = new DataTransfer();
      files.forEach((file) => transfer.items.add(file));
      input.files = transfer.files;
    } catch {
      /* an old browser: the list below says what was chosen */
    }
    choose(files);
    box.open = true;
    box.scrollIntoView({ behavior: "instant", block: "nearest" });
  },
  { capture: true },
);
