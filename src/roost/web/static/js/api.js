// Every call the page makes to the server: the API key, retries while the server is away,
// and NDJSON streams. The rest of the page never calls fetch itself.

const KEY_NAME = "roost.apiKey";
const notice = () => document.getElementById("notice");

let keyWaiter = null; // one key form for all the calls that were refused at once
let down = false;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY_NAME) || localStorage.getItem(KEY_NAME) || "";
}

export function saveKey(key, remember) {
  sessionStorage.setItem(KEY_NAME, key);
  if (remember) localStorage.setItem(KEY_NAME, key);
  else localStorage.removeItem(KEY_NAME);
}

export function askForKey(reason) {
  if (!keyWaiter) {
    keyWaiter = new Promise((resolve) => {
      const overlay = document.getElementById("key-overlay");
      const form = document.getElementById("key-form");
      document.getElementById("key-reason").textContent = reason;
      overlay.hidden = false;
      document.getElementById("key-input").focus();
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const input = document.getElementById("key-input");
        saveKey(input.value.trim(), document.getElementById("key-remember").checked);
        input.value = "";
        overlay.hidden = true;
        keyWaiter = null;
        resolve();
      }, { once: true });
    });
  }
  return keyWaiter;
}

function showNotice(text) {
  notice().textContent = text;
  notice().hidden = !text;
}

/** The message of any dialect's error body: Ollama's, OpenAI's or Cortex's. */
export function errorMessage(body, status) {
  const err = body && (body.error ?? body.message);
  if (typeof err === "string") return err;
  if (err && typeof err.message === "string") return err.message;
  return `the server answered ${status}`;
}

function headers(json) {
  const h = { Accept: "application/json" };
  if (json) h["Content-Type"] = "application/json";
  const key = storedKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** fetch that waits out a server restart: a refused connection is retried, with a notice,
 *  until it answers; a 401 asks for the key and retries. The caller gets the Response. */
async function send(path, { method = "GET", body, signal, retry = true } = {}) {
  let wait = 300;
  for (;;) {
    let res;
    try {
      res = await fetch(path, {
        method, signal, headers: headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      if (err.name === "AbortError" || !retry) throw err;
      if (!down) {
        down = true;
        showNotice("The server is not answering; retrying…");
      }
      await sleep(wait);
      wait = Math.min(wait * 2, 2000);
      continue;
    }
    if (down) {
      down = false;
      showNotice("");
      window.dispatchEvent(new Event("roost:reconnected"));
    }
    if (res.status === 401) {
      await askForKey(storedKey() ? "That key was refused; enter the server's API key."
                                  : "This server needs an API key.");
      continue;
    }
    return res;
  }
}

/** A JSON call; an error status becomes an ApiError with the server's message. */
export async function request(path, options = {}) {
  const res = await send(path, options);
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, errorMessage(body, res.status));
  return body;
}

/** A streaming call (NDJSON): onLine gets each parsed object; an `error` line throws. */
export async function stream(path, body, onLine, signal) {
  const res = await send(path, { method: "POST", body, signal, retry: false });
  if (!res.ok) {
    const err = await res.json().catch(() => null);
    throw new ApiError(res.status, errorMessage(err, res.status));
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) handle(JSON.parse(line), onLine);
    }
  }
  if (buffer.trim()) handle(JSON.parse(buffer), onLine);
}

function handle(obj, onLine) {
  if (obj.error) throw new ApiError(500, errorMessage(obj, 500));
  onLine(obj);
}

/** Every item of a Cortex list, following has_more. */
export async function listAll(path, order = "asc") {
  const items = [];
  let after = "";
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await request(`${path}${sep}limit=100&order=${order}${after}`);
    items.push(...page.data);
    if (!page.has_more || !page.last_id) return items;
    after = `&after=${encodeURIComponent(page.last_id)}`;
  }
}

export { showNotice };
