// Bundles Hydrogen into dist/: app.js (esbuild), its assets, olm, sw.js, index.html and
// config.json (the homeserver is typed on the login page, so any default will do).
import { build } from "esbuild";
import { cpSync, mkdirSync, writeFileSync } from "node:fs";

const here = new URL(".", import.meta.url).pathname;
const dist = `${here}dist`;
mkdirSync(`${dist}/olm`, { recursive: true });
await build({
    entryPoints: [`${here}src/main.js`],
    bundle: true,
    format: "esm",
    outfile: `${dist}/app.js`,
    external: ["fs", "path", "crypto"],
    logLevel: "warning",
});
cpSync(`${here}node_modules/hydrogen-view-sdk/asset-build/assets`, `${dist}/assets`, { recursive: true });
for (const f of ["olm.js", "olm.wasm", "olm_legacy.js"]) {
    cpSync(`${here}node_modules/@matrix-org/olm/${f}`, `${dist}/olm/${f}`);
}
writeFileSync(
    `${dist}/index.html`,
    `<!doctype html>
<html><head><meta charset="utf-8"><title>Hydrogen on Tidings</title>
<link rel="stylesheet" href="assets/theme-element-light.css"></head>
<body class="hydrogen"><script type="module" src="app.js"></script></body></html>
`,
);
cpSync(`${here}src/sw.js`, `${dist}/sw.js`);
writeFileSync(`${dist}/config.json`, JSON.stringify({ defaultHomeServer: "http://127.0.0.1:8008" }));
console.log(`hydrogen bundled into ${dist}`);
