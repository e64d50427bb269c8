// Wires the page together: loads the models, threads and presets, and the composer.
import { askForKey, request, showNotice } from "./api.js";
import { ask, currentThread, newChat, openThread, stop } from "./chat.js";
import { initModels, loadModels } from "./models.js";
import { initSettings, loadPresets } from "./settings.js";
import { loadThreads, onThreadEvents } from "./threads.js";

const $ = (id) => document.getElementById(id);

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
}

async function submit() {
  const question = $("prompt").value.trim();
  if (!question || !$("stop").hidden) return;
  $("prompt").value = "";
  try {
    await ask(question, setBusy);
  } catch (err) {
    showNotice(err.message);
    setTimeout(() => showNotice(""), 5000);
  }
}

async function loadAll() {
  await Promise.all([loadModels(), loadThreads(), loadPresets()]);
}

function init() {
  initModels();
  initSettings();
  onThreadEvents({
    open: (thread) => openThread(thread),
    deleted: (thread) => { if (currentThread() === thread.id) newChat(); },
  });
  $("composer").addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  $("stop").addEventListener("click", stop);
  $("new-thread").addEventListener("click", newChat);
  $("key-button").addEventListener("click", () => askForKey("Enter the server's API key.").then(loadAll));
  // After a restart: what the server holds may have changed while it was away.
  window.addEventListener("roost:reconnected", () => { loadAll().catch(() => {}); });
  loadAll().catch((err) => showNotice(err.message));
  heartbeat();
}

/** Ask for the version now and every few seconds, so a restart is noticed (and the page
 *  reloads its lists) even while nobody is typing. */
async function heartbeat() {
  try {
    const v = await request("/api/version");
    $("version").textContent = v.version;
  } catch {
    // an answer that is not JSON: try again at the next beat
  }
  setTimeout(heartbeat, 5000);
}

init();
