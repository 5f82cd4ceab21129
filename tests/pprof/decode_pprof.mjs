// Decodes a gzipped pprof profile with pprof-format (an independent decoder) and prints
// what the tests compare, as JSON: totals per sample type, and table sizes.
// usage: node decode_pprof.mjs PROFILE.pb.gz
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';

const profile = Profile.decode(gunzipSync(readFileSync(process.argv[2])));
const str = (i) => profile.stringTable.strings[Number(i)];
const types = profile.sampleType.map((t) => str(t.type));
const totals = Object.fromEntries(types.map((t) => [t, 0]));
for (const s of profile.sample) s.value.forEach((v, i) => (totals[types[i]] += Number(v)));
const functions = new Map(profile.function.map((f) => [Number(f.id), str(f.name)]));
const maxLines = Math.max(0, ...profile.location.map((l) => l.line.length));
const names = new Set();
for (const l of profile.location) for (const line of l.line) names.add(functions.get(Number(line.functionId)));
console.log(JSON.stringify({
  sample_types: types,
  units: profile.sampleType.map((t) => str(t.unit)),
  totals,
  samples: profile.sample.length,
  locations: profile.location.length,
  max_lines_per_location: maxLines,
  functions: [...names],
  mappings: profile.mapping.map((m) => ({ file: str(m.filename), build_id: str(m.buildId) })),
}));
