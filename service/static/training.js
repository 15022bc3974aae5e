// Train a new style: the form, its speeds with their estimated cost, and the /?tiny
// shortcut; the new style's progress then shows on its card (styles.js).

import { $, api, LocalError, showError } from "./common.js";
import { confirmCost, showSpeedEstimates } from "./estimate.js";
import { cards, update } from "./styles.js";

// The page's training speeds; "preset" is the API's word for the loss recipe.
const SPEEDS = {
  // 600 steps of 2 crops, not 300 of 4: the same images and time, a better score
  // (bench/adapt.py, docs/QUALITY.md).
  draft: { iterations: 600, image_size: 128, width: 0.5, batch_size: 2 },
  balanced: { iterations: 2000, image_size: 256 },
  best: { iterations: 6000, image_size: 256, style_size: 384 },
};

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

// Each speed's cost on the workers' device, after the styles have been asked for.
export function showTrainingEstimates() {
  showSpeedEstimates($("#speed"), SPEEDS, "draft", $("#speed-estimate"));
}
