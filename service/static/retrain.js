// "Train again" with other parameters: the dialog asks for the length of the training,
// the balance between the photo and the painting, and the crop size; the API merges
// what changed over the last run's parameters (POST /styles/{id}/train {"params": …}).

import { $ } from "./common.js";

// Both loss recipes weigh style 1.5e-4 by default (stylenet.losses.PRESETS); the
// balance multiplies it by 2^step, from a quarter (more photo) to four times (more painting).
const DEFAULT_STYLE_WEIGHT = 1.5e-4;
const BALANCE_WORDS = ["much more of the photo", "more of the photo", "as trained", "more of the painting", "much more of the painting"];

const dialog = $("#retrain");
const balance = $("#retrain-balance");
const syncBalance = () => ($("#retrain-balance-out").textContent = BALANCE_WORDS[Number(balance.value) + 2]);
balance.addEventListener("input", syncBalance);

function balanceOf(params) {
  const weight = params.style_weight ?? DEFAULT_STYLE_WEIGHT;
  return Math.max(-2, Math.min(2, Math.round(Math.log2(weight / DEFAULT_STYLE_WEIGHT))));
}

// Resolve the parameters to change ({} = the same again), or null if the user closed it.
export function askRetrain(style) {
  const params = style.params || {};
  $("#retrain-title").textContent = `Train “${style.name}” again`;
  const steps = $("#retrain-steps");
  const keep = steps.querySelector("option[value=keep]");
  keep.textContent = `As last time (${params.iterations ?? "?"} steps)`;
  steps.value = "keep";
  const size = $("#retrain-size");
  size.value = [...size.options].some((o) => o.value === String(params.image_size)) ? String(params.image_size) : "keep";
  size.querySelector("option[value=keep]").textContent = `As last time (${params.image_size ?? "?"} px)`;
  const start = balanceOf(params);
  balance.value = String(start);
  syncBalance();
  dialog.showModal();
  return new Promise((resolve) => {
    const done = (e) => {
      e.preventDefault();
      cleanup();
      const changes = {};
      if (steps.value !== "keep") changes.iterations = Number(steps.value);
      if (size.value !== "keep" && Number(size.value) !== params.image_size) changes.image_size = Number(size.value);
      const step = Number(balance.value);
      if (step !== start) changes.style_weight = DEFAULT_STYLE_WEIGHT * 2 ** step;
      dialog.close();
      resolve(changes);
    };
    const closed = () => {
      cleanup();
      resolve(null);
    };
    const cleanup = () => {
      $("#retrain-form").removeEventListener("submit", done);
      dialog.removeEventListener("close", closed);
    };
    $("#retrain-form").addEventListener("submit", done);
    dialog.addEventListener("close", closed);
  });
}

$("#retrain-cancel").addEventListener("click", () => dialog.close());
