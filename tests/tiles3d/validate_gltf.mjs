// Validate GLB files (or the GLB inside b3dm files) with the Khronos glTF validator.
// Usage (cwd = web/, where gltf-validator is installed): node validate_gltf.mjs FILE...
// Prints a JSON list [{path, errors, warnings, infos, messages}] and exits 1 if any file has errors.
import { createRequire } from 'module';
import { readFileSync } from 'fs';

const require = createRequire(process.cwd() + '/package.json');
const validator = require('gltf-validator');

function glbOf(buf) {
  if (buf.toString('ascii', 0, 4) !== 'b3dm') return buf;
  const ftJson = buf.readUInt32LE(12), ftBin = buf.readUInt32LE(16);
  const btJson = buf.readUInt32LE(20), btBin = buf.readUInt32LE(24);
  return buf.subarray(28 + ftJson + ftBin + btJson + btBin);
}

const out = [];
let failed = false;
for (const path of process.argv.slice(2)) {
  const bytes = new Uint8Array(glbOf(readFileSync(path)));
  const report = await validator.validateBytes(bytes, { maxIssues: 50, ignoredIssues: [] });
  const issues = report.issues;
  if (issues.numErrors > 0) failed = true;
  out.push({
    path, errors: issues.numErrors, warnings: issues.numWarnings, infos: issues.numInfos,
    messages: issues.messages.filter((m) => m.severity <= 1).slice(0, 20)
      .map((m) => `${m.severity === 0 ? 'E' : 'W'} ${m.code} ${m.pointer || ''} ${m.message}`),
  });
}
// exitCode, not exit(): exit() would cut a long report written to a pipe at 64 KiB
process.exitCode = failed ? 1 : 0;
process.stdout.write(JSON.stringify(out));
