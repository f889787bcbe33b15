// Render formulas with KaTeX, as strictly as it goes: read a JSON list of {"tex": ..., "display": bool} on
// standard input, write a JSON list of the same length on standard output, null for a formula that renders and
// KaTeX's message for one it rejects. One process for all formulas: starting node costs more than rendering.
// Used by tests/katex.py, which passes the folder of the katex package (node_modules/katex, installed by .ci/run).
"use strict";
const katex = require(process.argv[2]);

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const results = JSON.parse(input).map(({ tex, display }) => {
    try {
      // throwOnError: a parse error throws instead of drawing the source in red; strict "error": what KaTeX
      // accepts but LaTeX would not (unicode text in math, a newline in display mode, ...) throws too
      katex.renderToString(tex, { displayMode: display, throwOnError: true, strict: "error" });
      return null;
    } catch (error) {
      return String(error.message || error);
    }
  });
  process.stdout.write(JSON.stringify({ version: katex.version, results }));
});
