// Side by side: the chosen photo in the style chosen above (a blend too) and in a second
// style, with the same options: two requests at once, two results next to each other
// (stacked on a phone), each with its caption and its own download. Both are kept in
// the history (history.js).

import { $, LocalError, showError } from "./common.js";
import { styleSpec } from "./blend.js";
import { describe, factsOf, remember, specWords } from "./history.js";
import { styles, selectedStyle } from "./styles.js";
import { stylizeOnce } from "./stylize-request.js";

const box = $("#compare");
const second = $("#compare-style");
const button = $("#compare-btn");
const status = $("#compare-status");
const errorEl = $("#compare-error");
let urls = [];

// The choices: every servable style; the first other than the one chosen above by default.
function fillChoices() {
  const chosen = second.value;
  const usable = [...styles.values()].filter((s) => s.servable).sort((a, b) => a.name.localeCompare(b.name));
  second.replaceChildren(...usable.map((s) => new Option(s.name, s.id)));
  const fallback = usable.find((s) => s.id !== selectedStyle)?.id ?? "";
  second.value = usable.some((s) => s.id === chosen) ? chosen : fallback;
}

// One side: the result with its caption and download, or what went wrong.
function side(outcome, spec) {
  const figure = $("#compare-side").content.firstElementChild.cloneNode(true);
  const caption = $("figcaption", figure);
  const img = $("img", figure);
  const download = $("a", figure);
  if (outcome.status === "rejected") {
    img.remove();
    download.remove();
    const error = document.createElement("p");
    showError(error, outcome.reason);
    error.className = "error";
    caption.textContent = specWords(spec);
    figure.append(error);
    return figure;
  }
  const detail = outcome.value;
  const url = URL.createObjectURL(detail.blob);
  urls.push(url);
  img.src = url;
  const facts = factsOf(detail);
  download.href = url;
  download.download = facts.fileName;
  remember(detail);
  caption.textContent = `${facts.photoName}: ${describe(facts)}`;
  img.alt = `${facts.photoName} in the style of ${facts.style.words}`;
  return figure;
}

async function compare() {
  showError(errorEl, null);
  const photo = $("#photo").files[0];
  if (!photo) return showError(errorEl, new LocalError("Pick a photo first (above)."));
  if (!selectedStyle) return showError(errorEl, new LocalError("No style is ready yet."));
  const first = styleSpec(selectedStyle);
  const other = second.value;
  if (!other || other === first) {
    return showError(errorEl, new LocalError("Choose a second style other than the one chosen above."));
  }
  button.disabled = true;
  status.textContent = "Stylizing in both styles…";
  try {
    const outcomes = await Promise.allSettled([stylizeOnce(photo, first), stylizeOnce(photo, other)]);
    urls.forEach((url) => URL.revokeObjectURL(url));
    urls = [];
    const result = $("#compare-result");
    result.replaceChildren(side(outcomes[0], first), side(outcomes[1], other));
    result.hidden = false;
    const failed = outcomes.filter((o) => o.status === "rejected").length;
    status.textContent = failed ? `${2 - failed} of 2 done.` : "Both done.";
    result.scrollIntoView({ behavior: "instant", block: "nearest" });
  } finally {
    button.disabled = false;
  }
}

box.addEventListener("toggle", fillChoices);
second.addEventListener("focus", fillChoices);
button.addEventListener("click", () => compare());
