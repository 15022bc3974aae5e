// stylize web page: plain ES modules, public HTTP API only, same origin, no dependencies.
// This entry module loads the page's parts (each binds its own controls) and starts them:
// common.js (API call, errors, formatting), styles.js with style-card.js (list, gallery,
// live progress), stylize.js (photo and result), training.js with estimate.js (new style),
// ondevice.js ("Stylize on this device", where the service has onnxruntime-web),
// history.js (results kept in this browser), compare.js (two styles side by side),
// batch.js with zip.js (several photos, one zip).

import { $, KEY_STORAGE } from "./common.js";
import "./ondevice.js";
import { loadStyles } from "./styles.js";
import "./stylize.js";
import "./history.js";
import "./compare.js";
import "./batch.js";
import { showTrainingEstimates } from "./training.js";

// ------------------------------------------------------------------ API key
const keyInput = $("#api-key");
keyInput.value = localStorage.getItem(KEY_STORAGE) || "";
keyInput.addEventListener("change", () => {
  const value = keyInput.value.trim();
  if (value) localStorage.setItem(KEY_STORAGE, value);
  else localStorage.removeItem(KEY_STORAGE);
});

loadStyles();
showTrainingEstimates();
