// Blend two styles: a second style and a slider between them (issue 27). The service
// blends styles adapted from the same base and answers 422 with the reason for others,
// which the stylize form shows like any error. styleSpec() is what the form sends.

import { $ } from "./common.js";
import { styles } from "./styles.js";

const box = $("#blend");
const second = $("#blend-style");
const weight = $("#blend-weight");
const out = $("#blend-out");

// The second style's share, in whole percent (the service normalizes the weights).
const share = () => Math.round(Number(weight.value) * 100);

function syncOut() {
  const name = styles.get(second.value)?.name;
  out.textContent = name ? `${100 - share()} % / ${share()} % ${name}` : "off";
}

// The choices: every servable style, refreshed when the box opens or the list is used
// (styles appear and finish training while the page is open).
function fillChoices() {
  const chosen = second.value;
  const usable = [...styles.values()].filter((s) => s.servable).sort((a, b) => a.name.localeCompare(b.name));
  second.replaceChildren(new Option("None", ""));
  for (const s of usable) second.add(new Option(s.name, s.id, false, s.id === chosen));
  syncOut();
}

box.addEventListener("toggle", fillChoices);
second.addEventListener("focus", fillChoices);
second.addEventListener("change", syncOut);
weight.addEventListener("input", syncOut);
syncOut();

/** The form's `style` field: the selected style, or a blend `a:0.6,b:0.4` of it. */
export function styleSpec(selected) {
  const other = box.open ? second.value : "";
  if (!other || other === selected) return selected;
  return `${selected}:${100 - share()},${other}:${share()}`;
}

/** Words for the result's description: "The Scream" or "The Scream blended with …". */
export function styleWords(selected) {
  const name = (id) => styles.get(id)?.name || id;
  const spec = styleSpec(selected);
  if (spec === selected) return name(selected);
  return `${name(selected)} blended with ${share()} % of ${name(second.value)}`;
}
