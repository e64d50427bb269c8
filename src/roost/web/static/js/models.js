// The model picker (the store's models, /api/tags) and pulling one with a progress bar.
import { request, stream } from "./api.js";

const select = () => document.getElementById("model-select");
const MODEL_KEY = "roost.model";

export function currentModel() {
  return select().value;
}

/** Select `name` if the store has it; remembered for the next visit. */
export function chooseModel(name) {
  if (name && [...select().options].some((o) => o.value === name)) {
    select().value = name;
    localStorage.setItem(MODEL_KEY, name);
  }
}

export async function loadModels() {
  const previous = select().value || localStorage.getItem(MODEL_KEY) || "";
  const { models } = await request("/api/tags");
  const options = models.map((m) => {
    const o = document.createElement("option");
    o.value = o.textContent = m.name;
    return o;
  });
  if (!options.length) {
    const o = document.createElement("option");
    o.value = "";
    o.textContent = "no models: pull one";
    options.push(o);
  }
  select().replaceChildren(...options);
  chooseModel(previous);
  return models;
}

export function initModels() {
  select().addEventListener("change", () => localStorage.setItem(MODEL_KEY, select().value));
  document.getElementById("pull-form").addEventListener("submit", (event) => {
    event.preventDefault();
    pull(document.getElementById("pull-name").value.trim());
  });
}

async function pull(name) {
  const bar = document.getElementById("pull-progress");
  const status = document.getElementById("pull-status");
  const button = document.getElementById("pull-button");
  if (!name) return;
  button.disabled = true;
  bar.hidden = false;
  bar.removeAttribute("value"); // indeterminate until a size is known
  status.textContent = `pulling ${name}…`;
  try {
    await stream("/api/pull", { model: name, stream: true }, (line) => {
      if (line.status !== "success") status.textContent = line.status ?? "";
      if (line.total) {
        bar.max = line.total;
        bar.value = line.completed ?? 0;
      }
    });
    await loadModels();
    chooseModel(name);
    status.textContent = `${name}: success`;
  } catch (err) {
    status.textContent = `pull failed: ${err.message}`;
  } finally {
    button.disabled = false;
    bar.hidden = true;
  }
}
