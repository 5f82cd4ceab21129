// Bundles the report front end into one self-contained HTML page (all JS and CSS inline).
// Usage: node build.mjs --out FILE.html
// The page carries exactly one data placeholder, which `memcensus html` replaces with the
// report model JSON (every "</" written as "<\/"). Fails when the output would break that
// contract: a missing or repeated placeholder, or a "</script" / "</style" inside the inlined code.
import { build } from 'esbuild';
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const PLACEHOLDER = '__MEMCENSUS_DATA__';

function parseArgs(argv) {
  const i = argv.indexOf('--out');
  if (i < 0 || !argv[i + 1]) throw new Error('usage: node build.mjs --out FILE.html');
  return { out: argv[i + 1] };
}

function count(haystack, needle) {
  return haystack.split(needle).length - 1;
}

async function bundle() {
  const result = await build({
    entryPoints: [join(here, 'src', 'main.js')],
    bundle: true,
    minify: true,
    // d3-flame-graph recognises its own hierarchy nodes by constructor name.
    keepNames: true,
    format: 'iife',
    target: ['chrome100', 'firefox100', 'safari15'],
    legalComments: 'none',
    write: false,
    metafile: true,
    outdir: 'bundle',
    logLevel: 'warning',
  });
  const js = result.outputFiles.find((f) => f.path.endsWith('.js'));
  const css = result.outputFiles.find((f) => f.path.endsWith('.css'));
  return { js: js.text, css: css ? css.text : '', licenses: licenses(Object.keys(result.metafile.inputs)) };
}

/**
 * The license texts of the npm packages whose files went into the bundle, as one HTML comment
 * (the page redistributes them). Identical texts are listed once with all their packages.
 */
function licenses(inputs) {
  const packages = new Set();
  for (const path of inputs) {
    const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path);
    if (m) packages.add(m[1]);
  }
  const byText = new Map();
  for (const name of [...packages].sort()) {
    const dir = join(here, 'node_modules', name);
    const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
    if (!file) throw new Error(`${name}: no license file to include in the page`);
    const version = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
    const text = readFileSync(join(dir, file), 'utf8').trim();
    if (!byText.has(text)) byText.set(text, []);
    byText.get(text).push(`${name}@${version}`);
  }
  const blocks = [...byText].map(([text, names]) => `${names.join(', ')}:\n\n${text}`);
  // ASCII only (see embed.mjs), and nothing that could close the comment early.
  const body = blocks.join('\n\n----------------------------------------\n\n')
    .replace(/\u00a9/g, '(c)').replace(/[^\x00-\x7f]/g, '?').replace(/--+>/g, '- ->');
  return `<!--\nThird-party software bundled in this page, and its licenses:\n\n${body}\n-->`;
}

function assemble(page, { js, css, licenses }) {
  if (/<\/script/i.test(js)) throw new Error('bundled script contains "</script"');
  if (/<\/style/i.test(css)) throw new Error('bundled style contains "</style"');
  // Split/join instead of String.replace: the bundle contains "$" sequences.
  const withStyle = page.split('<!--STYLE-->');
  const withScript = withStyle.join(`<style>${css}</style>`).split('<!--SCRIPT-->');
  if (withStyle.length !== 2 || withScript.length !== 2) {
    throw new Error('src/index.html must hold <!--STYLE--> and <!--SCRIPT--> once each');
  }
  const html = withScript.join(`<script>${js}</script>`).replace('</html>', () => `${licenses}\n</html>`);
  if (count(html, PLACEHOLDER) !== 1) throw new Error(`page must hold ${PLACEHOLDER} exactly once`);
  return html;
}

const { out } = parseArgs(process.argv.slice(2));
const page = readFileSync(join(here, 'src', 'index.html'), 'utf8');
const html = assemble(page, await bundle());
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, html);
console.log(`web: ${out} (${html.length} bytes)`);
