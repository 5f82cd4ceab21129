// Writes a C++ source defining the report template as a char array (declared in
// report_asset.h). A braced array, not a raw string literal: compilers cap string literal size.
// Usage: node embed.mjs IN.html OUT.cc
import { readFileSync, writeFileSync } from 'node:fs';

const [input, output] = process.argv.slice(2);
if (!input || !output) throw new Error('usage: node embed.mjs IN.html OUT.cc');
const bytes = readFileSync(input);
// ASCII only, so every byte fits a char whether char is signed or not (esbuild escapes
// non-ASCII characters in the bundle; src/index.html uses entities).
const wide = bytes.findIndex((b) => b > 127);
if (wide >= 0) throw new Error(`${input}: non-ASCII byte at offset ${wide}`);
const lines = [];
for (let i = 0; i < bytes.length; i += 32) {
  lines.push(Array.from(bytes.subarray(i, i + 32), (b) => String(b)).join(','));
}
const source = `// Generated from ${input.split('/').pop()} by web/embed.mjs; do not edit.
#include "web/report_asset.h"

namespace memcensus {

const char kReportTemplate[] = {
${lines.join(',\n')},
0};
const unsigned long kReportTemplateSize = ${bytes.length}UL;

}  // namespace memcensus
`;
writeFileSync(output, source);
