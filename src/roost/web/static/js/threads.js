// The sidebar: the server's threads (the same ones `roost chat -t` writes), newest first,
// each with open, rename and delete.
import { listAll, request } from "./api.js";

const list = () => document.getElementById("thread-list");
let handlers = { open: () => {}, deleted: () => {} };
let activeId = null;

export function onThreadEvents(h) {
  handlers = h;
}

export function setActive(id) {
  activeId = id;
  for (const li of list().children) li.classList.toggle("active", li.dataset.id === id);
}

export async function loadThreads() {
  const threads = await listAll("/v1/threads", "desc");
  threads.sort((a, b) => (b.updated_at ?? 0) - (a.updated_at ?? 0));
  list().replaceChildren(...threads.map(item));
  setActive(activeId);
  return threads;
}

function item(thread) {
  const li = document.createElement("li");
  li.className = "thread";
  li.dataset.id = thread.id;

  const open = document.createElement("button");
  open.type = "button";
  open.className = "thread-open";
  open.textContent = thread.title || "Untitled";
  open.title = `${thread.model || "no model"} · ${thread.message_count ?? 0} messages`;
  open.addEventListener("click", () => handlers.open(thread));

  const rename = button("thread-rename", "✎", "Rename", () => startRename(li, open, thread));
  const del = button("thread-delete", "✕", "Delete", () => confirmDelete(del, thread));
  li.append(open, rename, del);
  return li;
}

function button(className, label, title, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  b.title = title;
  b.setAttribute("aria-label", title);
  b.addEventListener("click", onClick);
  return b;
}

function startRename(li, open, thread) {
  const input = document.createElement("input");
  input.className = "thread-title-input";
  input.value = thread.title || "";
  open.replaceWith(input);
  input.focus();
  input.select();
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (save && title && title !== thread.title) {
      await request(`/v1/threads/${encodeURIComponent(thread.id)}`, { method: "PATCH", body: { title } });
      thread.title = title;
      open.textContent = title;
    }
    input.replaceWith(open);
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
}

function confirmDelete(del, thread) {
  if (del.dataset.armed !== "1") {
    // A second click within a few seconds deletes: no modal dialog, no accident.
    del.dataset.armed = "1";
    del.textContent = "Delete?";
    setTimeout(() => { del.dataset.armed = ""; del.textContent = "✕"; }, 4000);
    return;
  }
  request(`/v1/threads/${encodeURIComponent(thread.id)}`, { method: "DELETE" }).then(() => {
    del.closest("li").remove();
    handlers.deleted(thread);
  });
}
