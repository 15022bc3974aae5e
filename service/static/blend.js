// Blend two styles: a second style and a slider between them (issue 27). The service
// blends styles adapted from the same base and answers 422 with the reason for others,
// which the stylize form shows like any error. styleSpec() is what the form sends.

import { $ } from "./common.js";
import { selectedStyle, styles } from "./styles.js";

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

// Whether two styles share a start (GET /styles/{id} `start`): the same base, or one
// started from the other's serving weights. Longer chains the service still finds.
const serving = (s) => s.versions?.find((v) => v.version === s.current_version)?.sha256;
function shareStart(a, b) {
  const [sa, sb] = [a?.start?.sha256, b?.start?.sha256];
  return Boolean((sa && (sa === sb || sa === serving(b))) || (sb && sb === serving(a)));
}

// The choices: the servable styles that blend with the selected one, refreshed when the
// box opens or the list is used (styles appear and finish training while the page is open).
function fillChoices() {
  const chosen = second.value;
  const first = styles.get(selectedStyle);
  const usable = [...styles.values()]
    .filter((s) => s.servable && s.id !== selectedStyle && shareStart(s, first))
    .sort((a, b) => a.name.localeCompare(b.name));
  const none = usable.length ? "None" : `No style shares a base with ${first?.name ?? "this style"}`;
  second.replaceChildren(new Option(none, ""));
  for (const s of usable) second.add(new Option(s.name, s.id, false, s.id === chosen));
  syncOut();
}

box.addEventListener("toggle", fillChoices);
$("#gallery").addEventListener("change", fillChoices); // another first style: other partners
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
