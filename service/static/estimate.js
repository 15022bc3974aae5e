// Cost before commitment: what a training will take on the workers' device, before it
// starts (POST /training/estimate, priced from the speed the workers measured).
// Self-contained: app.js calls showSpeedEstimates() once and confirmCost() before
// starting a run.

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

// Append "≈ 12 min" to each training speed's option; on a CPU worker, select the fastest.
export async function showSpeedEstimates(select, choices, fastest) {
  let device = null;
  for (const option of select.options) {
    const priced = await priceOf(choices[option.value]);
    if (!priced) continue;
    device = priced.speed.device;
    option.dataset.label ??= option.textContent;
    option.textContent = `${option.dataset.label} · ≈ ${fmtDuration(priced.estimated_seconds)}`;
  }
  if (device === "cpu" && choices[fastest]) select.value = fastest;
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
