// Cost before commitment: what a training will take on the workers' device, before it
// starts (POST /training/estimate, priced from the speed the workers measured).
// Self-contained: training.js calls showSpeedEstimates() once; training.js and styles.js
// call confirmCost() before starting a run.

const CONFIRM_ABOVE_S = 5 * 60; // ask before starting anything longer

function fmtDuration(s) {
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  const h = Math.floor(s / 3600);
  return `${h} h ${Math.round((s - h * 3600) / 60)} min`;
}

// {estimated_seconds, speed} or null when the API cannot say (no worker measured yet).
export async function priceOf(params) {
  try {
    const response = await fetch("/training/estimate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ params }),
    });
    if (!response.ok) return null;
    const body = await response.json();
    return body.estimated_seconds == null ? null : body;
  } catch {
    return null;
  }
}

// Each training speed's cost: "≈ 12 min" after its (short) label in the list, and the
// chosen speed in full on `line` under the list ("≈ 12 min on the training worker (cpu) ·
// 600 steps of 2 small crops"). On a CPU worker the fastest speed becomes the form's
// default: selected now unless the user has chosen meanwhile, and what a reset of the
// form (after a training is submitted) returns to.
export async function showSpeedEstimates(select, choices, fastest, line) {
  const prices = new Map(); // option value -> {estimated_seconds, speed}
  let touched = false;
  const describe = () => {
    const option = select.selectedOptions[0];
    const price = prices.get(option?.value);
    const parts = [];
    if (price) {
      parts.push(`≈ ${fmtDuration(price.estimated_seconds)} on the training worker (${price.speed.device})`);
    }
    if (option?.dataset.detail) parts.push(option.dataset.detail);
    line.textContent = parts.join(" · ");
  };
  select.addEventListener("change", () => {
    touched = true;
    describe();
  });
  // "reset" fires before the controls are reset: describe the speed they return to.
  select.form?.addEventListener("reset", () => setTimeout(describe));
  describe();
  let device = null;
  for (const option of select.options) {
    const price = await priceOf(choices[option.value]);
    if (!price) continue;
    prices.set(option.value, price);
    device = price.speed.device;
    option.dataset.label ??= option.textContent;
    option.textContent = `${option.dataset.label} · ≈ ${fmtDuration(price.estimated_seconds)}`;
  }
  if (device === "cpu" && choices[fastest]) {
    const chosen = select.value;
    for (const option of select.options) option.defaultSelected = option.value === fastest;
    select.value = touched ? chosen : fastest;
  }
  describe();
}

// Resolve true to go ahead; above a few minutes, ask first.
export async function confirmCost(params, what = "This training") {
  const priced = await priceOf(params);
  if (!priced || priced.estimated_seconds <= CONFIRM_ABOVE_S) return true;
  return window.confirm(
    `${what} will take about ${fmtDuration(priced.estimated_seconds)} on the ` +
      `training worker (${priced.speed.device}). Start it?`,
  );
}
