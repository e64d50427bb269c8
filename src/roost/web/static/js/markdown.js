// Model output to safe DOM: marked renders the markdown, DOMPurify removes whatever could run
// or fetch. Raw HTML in the output is shown as text (a coding model writes HTML about HTML),
// images become their alt text (no remote loads), links open apart with no referrer.
import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";

const escape = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const marked = new Marked({
  gfm: true,
  breaks: true, // a model's single newlines are meant as line breaks
  renderer: {
    html(token) {
      return token.block ? `<p class="raw-html">${escape(token.text.trim())}</p>` : escape(token.text);
    },
    image(token) {
      return escape(token.text ? `[image: ${token.text}]` : "[image]");
    },
  },
});

const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["img", "picture", "source", "video", "audio", "track", "iframe", "frame",
    "object", "embed", "style", "link", "meta", "base", "form", "input", "button", "textarea",
    "select", "svg", "math", "template"],
  FORBID_ATTR: ["style", "srcset", "background", "poster", "formaction", "ping"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

/** The sanitized DOM of a markdown text, with a copy button on each code block. */
export function render(text) {
  const fragment = DOMPurify.sanitize(marked.parse(text), PURIFY);
  for (const pre of fragment.querySelectorAll("pre")) addCopyButton(pre);
  return fragment;
}

function addCopyButton(pre) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "Copy";
  button.addEventListener("click", async () => {
    const code = pre.querySelector("code") ?? pre;
    try {
      await copyText(code.textContent);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
  pre.prepend(button);
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // An http:// page on a LAN address is not a secure context: the old selection copy.
  const area = document.createElement("textarea");
  area.value = text;
  document.body.append(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("copy refused");
}
