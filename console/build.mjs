// Builds the web console into facade/streamspace_facade/console_dist/ (run by `make console`):
// src/main.js and src/style.css bundled and minified by esbuild into assets/ under
// content-hashed names, and an index.html that refers to them (with their SRI digests). The
// facade serves index.html at / (no-cache) and the assets as immutable: a new build changes
// the names, so a browser never mixes an old page with new assets.
import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "facade", "streamspace_facade", "console_dist");
const staging = `${out}.tmp-${process.pid}`;

await rm(staging, { recursive: true, force: true });
process.on("exit", (code) => {
  if (code !== 0) rmSync(staging, { recursive: true, force: true });
});
const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: "src/main.js", style: "src/style.css" },
  outdir: join(staging, "assets"),
  entryNames: "[name]-[hash]",
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  legalComments: "none",
  metafile: true,
  logLevel: "warning",
});

const outputs = {};
for (const [file, meta] of Object.entries(result.metafile.outputs)) {
  if (meta.entryPoint) {
    const path = join(here, file);
    const digest = createHash("sha384").update(await readFile(path)).digest("base64");
    outputs[basename(path).split("-")[0]] = { name: basename(path), sri: `sha384-${digest}` };
  }
}
const { app, style } = outputs;
const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>StreamSpace</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/${style.name}" integrity="${style.sri}">
<script type="module" src="/assets/${app.name}" integrity="${app.sri}"></script>
</head>
<body>
<noscript>The StreamSpace console needs JavaScript.</noscript>
<div id="root"></div>
</body>
</html>
`;
await writeFile(join(staging, "index.html"), page);
// swap the finished build in whole: a facade serving meanwhile sees the old build or the new
await rm(out, { recursive: true, force: true });
await mkdir(dirname(out), { recursive: true });
await rename(staging, out);
const sizes = Object.values(result.metafile.outputs).map((o) => o.bytes);
console.log(
  `console built into ${relative(process.cwd(), out)}: ${app.name}, ${style.name} ` +
    `(${sizes.reduce((a, b) => a + b, 0)} bytes)`,
);
