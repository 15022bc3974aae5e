// One style's card in the list, drawn from its document: picture, state, training
// progress with the loss curve, and the details (id, version, score, loss).

import { $, fmtSeconds } from "./common.js";

// This browser's key id, as the API names owners (16 hex digits of a SHA-256 of
// "stylize-api-key\0" + key); null without a key or without WebCrypto (plain http).
let myKeyId = null;
export async function learnKeyId(key) {
  myKeyId = null;
  if (!key || !globalThis.crypto?.subtle) return;
  const bytes = new TextEncoder().encode(`stylize-api-key\0${key}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  myKeyId = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, 16);
}

export function withRevision(link, style) {
  return `${link}?r=${style.revision}`;
}

// The card's picture: the running training's latest preview, else the style's picture
// (a preview of the version that serves), else the painting itself.
function cardPicture(style) {
  const training = style.status === "queued" || style.status === "training";
  const link = (training && style.links.training_preview) || style.links.preview || style.links.style_image;
  return withRevision(link, style);
}

// The quality score (r: 1 = as good as image optimization on the same loss), measured
// after the style is published; "at most" where it is an upper bound.
function scoreSummary(style) {
  const score = (style.metrics || {}).score;
  if (!score) return "";
  if (score.status === "scoring") return "Quality score: scoring…";
  if (score.status === "failed") return "Quality score: could not be measured";
  if (score.status !== "done" || !Number.isFinite(score.r_mean)) return "";
  const bound = score.bound === "upper" ? "at most " : "";
  const photos = score.photos === "evaluation" ? "" : " (on your own photos)";
  return (
    `Quality score ${bound}${Number(score.r_mean).toFixed(2)}${photos} ` +
    "(1 = as close to the painting as a slow, photo-by-photo painting would get)"
  );
}

function ownerSummary(style) {
  if (!style.owner) return "Shared style: made without an API key";
  if (myKeyId && style.owner === myKeyId) return "Yours (made with this browser's API key)";
  return `Made with another API key (${style.owner.slice(0, 6)}…)`;
}

function recipeSummary(style) {
  const p = style.params || {};
  if (!p.iterations) return "";
  const size = p.image_size ? ` on ${p.image_size} px crops` : "";
  return `Trained for ${p.iterations} steps${size}`;
}

const ordinal = (n) => {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : ["th", "st", "nd", "rd"][n % 10] || "th";
  return `${n}${suffix}`;
};

const clock = (seconds) =>
  new Date(Date.now() + seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

// A queued style: its place in line and when it should start and be ready.
export function queueText(style) {
  const q = style.queue;
  if (!q) return "queued · waiting for its place in line to be known";
  const parts = [q.position === 1 ? "next in line" : `${ordinal(q.position)} in line`];
  if (q.starts_in_seconds != null) {
    parts.push(q.starts_in_seconds < 1 ? "starts as soon as a worker is free" : `starts in ≈ ${fmtSeconds(q.starts_in_seconds)}`);
  }
  if (q.ready_in_seconds != null) {
    parts.push(`ready in ≈ ${fmtSeconds(q.ready_in_seconds)} (about ${clock(q.ready_in_seconds)})`);
  }
  return parts.join(" · ");
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

// Fill `card` (a clone of the #style-card template) from `style`; called again on every
// update of the style.
export function fillCard(card, style) {
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
  $(".thumb-btn", card).setAttribute("aria-label", `Enlarge the painting of ${style.name}`);
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
    $(".ptext", card).textContent = style.status === "queued" ? queueText(style) : "starting";
  }
  bar.setAttribute("aria-label", `Training progress of ${style.name}`);
  drawCurve(card, style);
  $(".error-text", card).textContent = style.error || "";
  $(".error-text", card).hidden = !style.error;
  // What a user asks about a style, one line each: how good, whose, how it was made.
  const detail = [scoreSummary(style), ownerSummary(style)];
  if (style.current_version) detail.push(`Serving version ${style.current_version}`);
  const photos = style.metrics?.content_images;
  const recipe = recipeSummary(style);
  detail.push(recipe && photos ? `${recipe}, from ${photos} photos` : recipe);
  const start = startSummary(style);
  if (start) detail.push(start[0].toUpperCase() + start.slice(1));
  detail.push(`Id for the API and the command line: ${style.id}`);
  $(".detail", card).replaceChildren(
    ...detail.filter(Boolean).map((text) => {
      const line = document.createElement("span");
      line.textContent = text;
      return line;
    }),
  );
  $(".more summary", card).setAttribute("aria-label", `Details of ${style.name}`);
  $(".again", card).hidden = training;
  $(".again", card).setAttribute("aria-label", `Train ${style.name} again`);
  $(".cancel", card).hidden = !training;
  $(".cancel", card).setAttribute("aria-label", `Cancel training of ${style.name}`);
  $(".delete", card).setAttribute("aria-label", `Delete ${style.name}`);
}
