// The styles: the list of cards, the gallery of usable styles, live progress of the
// trainings (one EventSource each), and the cards' actions (train again, cancel, delete).

import { $, api, KEY_STORAGE, showError } from "./common.js";
import { confirmCost } from "./estimate.js";
import { askRetrain } from "./retrain.js";
import { fillCard, learnKeyId, withRevision } from "./style-card.js";

const TERMINAL = new Set(["ready", "failed", "canceled"]);

export const styles = new Map(); // id -> style document
const streams = new Map(); // id -> EventSource
export const cards = new Map(); // id -> <li>
export let selectedStyle = null;

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
    $(".again", card).addEventListener("click", () =>
      askRetrain(styles.get(style.id) || style).then((changes) => changes && trainAgain(style.id, changes)),
    );
    $(".cancel", card).addEventListener("click", () => cancelTraining(style.id));
    $(".delete", card).addEventListener("click", () => removeStyle(style.id));
    $(".thumb-btn", card).addEventListener("click", () => {
      // Enlarged: the painting itself (the card's thumbnail may be a preview).
      const current = styles.get(style.id) || style;
      openViewer(`${current.name}: the painting`, withRevision(current.links.style_image, current), `The painting of ${current.name}`);
    });
    cards.set(style.id, card);
  }
  fillCard(card, style);
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

export function update(style) {
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

export async function loadStyles() {
  const errorEl = $("#styles-error");
  await learnKeyId(localStorage.getItem(KEY_STORAGE)).catch(() => {}); // to say "yours"
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

// A new run; the dialog (retrain.js) may change some parameters, which the API merges
// over the last run's. Its current version serves until the run publishes the next one.
// RQ records the previous job finished a moment after the style is ready: the API
// answers 409 job_exists with Retry-After until then.
async function trainAgain(id, changes = {}, attempts = 5, confirmed = false) {
  const merged = { ...(styles.get(id)?.params ?? {}), ...changes };
  if (!confirmed && !(await confirmCost(merged, "Training it again"))) return;
  try {
    const response = await api(`/styles/${id}/train`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ params: changes }),
    });
    update(await response.json());
    showError($("#styles-error"), null);
  } catch (err) {
    if (err.code === "job_exists" && attempts > 1) {
      setTimeout(() => trainAgain(id, changes, attempts - 1, true), 1000);
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
