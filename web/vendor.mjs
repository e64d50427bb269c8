// Copies the pinned scripts (and their licenses) from node_modules into the Python package,
// where they are committed: a user installing Roost never runs npm.
import { copyFileSync, mkdirSync } from "node:fs";

const out = new URL("../src/roost/web/static/vendor/", import.meta.url);
mkdirSync(out, { recursive: true });
const files = {
  "marked/lib/marked.esm.js": "marked.esm.js",
  "marked/LICENSE": "marked.LICENSE.md",
  "dompurify/dist/purify.es.mjs": "purify.es.mjs",
  "dompurify/LICENSE": "dompurify.LICENSE", // Apache-2.0; DOMPurify is MPL-2.0 or Apache-2.0
  "dompurify/LICENSE-MPL": "dompurify.LICENSE-MPL",
};
for (const [from, to] of Object.entries(files)) {
  copyFileSync(new URL(`node_modules/${from}`, import.meta.url), new URL(to, out));
}
