// One conversation: its messages on screen, a turn streamed from /api/chat, and each turn
// kept in the server's thread as `roost chat` keeps it (the question, then the answer,
// marked incomplete when it was stopped).
import { ApiError, listAll, request, stream } from "./api.js";
import { render } from "./markdown.js";
import { chooseModel, currentModel } from "./models.js";
import { chatOptions, systemPrompt } from "./settings.js";
import { loadThreads, setActive } from "./threads.js";

const box = () => document.getElementById("messages");
const state = { threadId: null, messages: [], controller: null };

export function currentThread() {
  return state.threadId;
}

export function newChat() {
  stop();
  state.threadId = null;
  state.messages = [];
  box().replaceChildren();
  setActive(null);
}

export async function openThread(thread) {
  stop();
  const messages = await listAll(`/v1/threads/${encodeURIComponent(thread.id)}/messages`);
  state.threadId = thread.id;
  state.messages = messages
    .filter((m) => ["user", "assistant", "system"].includes(m.role))
    .map((m) => ({ role: m.role, content: text(m), status: m.status }));
  box().replaceChildren(...state.messages.map((m) => bubble(m.role, m.content, m.status).el));
  chooseModel(thread.model);
  setActive(thread.id);
  scrollDown(true);
}

export function stop() {
  state.controller?.abort();
}

function text(message) {
  return (message.content || []).map((part) => part.text?.value ?? "").join("");
}

function bubble(role, content, status) {
  const el = document.createElement("div");
  el.className = `msg ${role}`;
  const body = document.createElement("div");
  body.className = "body";
  el.append(body);
  const view = {
    el,
    set(textNow) {
      if (role === "assistant") body.replaceChildren(render(textNow));
      else body.textContent = textNow;
    },
    mark(label) {
      el.querySelector(".mark")?.remove();
      if (!label) return;
      const m = document.createElement("div");
      m.className = "mark";
      m.textContent = label;
      el.append(m);
    },
  };
  view.set(content);
  if (status === "incomplete") view.mark("(stopped)");
  return view;
}

function scrollDown(force) {
  const b = box();
  if (force || b.scrollHeight - b.scrollTop - b.clientHeight < 80) b.scrollTop = b.scrollHeight;
}

async function ensureThread(question, model) {
  if (state.threadId) return;
  const title = question.split(/\s+/).join(" ").trim().slice(0, 60);
  const thread = await request("/v1/threads", { method: "POST", body: { title, model } });
  state.threadId = thread.id;
  setActive(thread.id);
  loadThreads();
}

async function keep(threadId, role, content, status = "completed") {
  await request(`/v1/threads/${encodeURIComponent(threadId)}/messages`,
    { method: "POST", body: { role, content, status } });
}

/** Send one question and stream its answer; resolves when the turn is stored. */
export async function ask(question, onBusy) {
  const model = currentModel();
  if (!model) throw new ApiError(400, "no model: pull one first");
  const controller = new AbortController();
  state.controller = controller;
  onBusy(true);
  box().append(bubble("user", question).el);
  const answer = bubble("assistant", "");
  answer.el.classList.add("streaming");
  box().append(answer.el);
  scrollDown(true);
  let reply = "";
  let status = "completed";
  let threadId = null; // the turn's own thread, even if the user opens another meanwhile
  try {
    await ensureThread(question, model);
    threadId = state.threadId;
    await keep(threadId, "user", question);
    const system = systemPrompt();
    const messages = [...(system ? [{ role: "system", content: system }] : []),
      ...state.messages.map(({ role, content }) => ({ role, content })),
      { role: "user", content: question }];
    state.messages.push({ role: "user", content: question });
    let pending = null;
    await stream("/api/chat", { model, messages, stream: true, options: chatOptions() }, (line) => {
      reply += line.message?.content ?? "";
      pending ??= setTimeout(() => { pending = null; answer.set(reply); scrollDown(false); }, 40);
    }, controller.signal);
    clearTimeout(pending);
  } catch (err) {
    status = "incomplete";
    answer.mark(err.name === "AbortError" ? "(stopped)" : `Error: ${err.message}`);
    if (err.name !== "AbortError") answer.el.classList.add("error");
  } finally {
    answer.set(reply);
    answer.el.classList.remove("streaming");
    if (state.controller === controller) state.controller = null;
    onBusy(false);
  }
  if (threadId && (reply || status === "completed")) {
    if (state.threadId === threadId) state.messages.push({ role: "assistant", content: reply, status });
    await keep(threadId, "assistant", reply, status);
  }
  await loadThreads();
}
