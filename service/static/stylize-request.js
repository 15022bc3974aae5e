// One POST /stylize of a photo with the page's options (strength, size, colours), as
// the Stylize button sends it; side by side (compare.js) and batch (batch.js) send the
// same. And the name a result is saved under.

import { $, api } from "./common.js";

/** The request's form: the photo, the style spec, and the options chosen on the page. */
export function stylizeForm(photo, spec) {
  const form = new FormData();
  form.append("image", photo, photo.name || "pasted.png");
  form.append("style", spec); // one style, or a blend (blend.js)
  form.append("strength", $("#strength").value);
  // Print size: up to 8192 px; the service stylizes large images by exact tiled inference.
  form.append("max_side", $("#print-size").checked ? "8192" : $("#max-side").value);
  form.append("preserve_color", $("#preserve-color").checked ? "true" : "false");
  return form;
}

/** "photo-scream.jpg": the photo's name, the style spec, the result's type. */
export function resultName(photoName, spec, blob) {
  const ext = (blob.type.split("/")[1] || "png").replace("jpeg", "jpg");
  const named = spec.replaceAll(/[:,]/g, "-");
  return `${(photoName || "photo").replace(/\.[^.]*$/, "")}-${named}.${ext}`;
}

const pause = (ms, signal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });

/**
 * Stylize `photo` in `spec`: {blob, photo, form, response}, the shape history.js keeps.
 * A 429 (the service busy: its queue or memory budget full) is tried again, 3 times.
 */
export async function stylizeOnce(photo, spec, signal) {
  const form = stylizeForm(photo, spec);
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await api("/stylize", { method: "POST", body: form, signal });
      return { blob: await response.blob(), photo, form, response };
    } catch (err) {
      if (err.status !== 429 || attempt > 3 || signal?.aborted) throw err;
      await pause(1000 * attempt, signal);
    }
  }
}
