// Presets (/v1/presets) and the generation parameters sent with each chat request.
import { request } from "./api.js";

const presetSelect = () => document.getElementById("preset-select");
const system = () => document.getElementById("system");
const fields = () => [...document.querySelectorAll("#options input[data-option]")];
let presetOptions = {}; // a preset's options the form has no field for, kept as they are

export async function loadPresets() {
  const { data } = await request("/v1/presets");
  const none = document.createElement("option");
  none.value = "";
  none.textContent = "none";
  const options = data.map((p) => {
    const o = document.createElement("option");
    o.value = o.textContent = p.name;
    return o;
  });
  const chosen = presetSelect().value;
  presetSelect().replaceChildren(none, ...options);
  presetSelect().value = data.some((p) => p.name === chosen) ? chosen : "";
}

async function applyPreset(name) {
  presetOptions = {};
  if (!name) return;
  const preset = await request(`/v1/presets/${encodeURIComponent(name)}`);
  system().value = preset.system || "";
  const opts = { ...(preset.options || {}) };
  for (const input of fields()) {
    const key = input.dataset.option;
    input.value = key in opts ? String(opts[key]) : "";
    delete opts[key];
  }
  presetOptions = opts;
}

export function initSettings() {
  presetSelect().addEventListener("change", () => applyPreset(presetSelect().value));
}

/** The options of a chat request: the preset's, under what the fields say. */
export function chatOptions() {
  const options = { ...presetOptions };
  for (const input of fields()) {
    if (input.value.trim() !== "") options[input.dataset.option] = Number(input.value);
  }
  return options;
}

export function systemPrompt() {
  return system().value.trim();
}
