// One style's card in the list, drawn from its document: picture, state, training
// progress with the loss curve, and the details (id, version, score, loss).

import { $, fmtSeconds } from "./common.js";

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
}
