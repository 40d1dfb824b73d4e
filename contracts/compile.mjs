#!/usr/bin/env node
// Compile contracts/*.sol offline with the pinned npm `solc` (solcjs) and write one JSON
// artifact per deployable contract to cic_seeding/chain/artifacts/<ContractName>.json.
//
// Usage (from anywhere):
//   node contracts/compile.mjs          write the artifacts (and delete stale ones)
//   node contracts/compile.mjs --check  compile in memory only; exit 1 and list the
//                                       contracts whose committed artifact differs
//
// Settings: optimizer on, 200 runs, evmVersion "paris" (no PUSH0, so the code also runs
// on pre-Shanghai chains; anvil's newer default hardfork runs it unchanged).
// Artifacts are deterministic: keys sorted at every level, 2-space indent, trailing
// newline. `sourceSha256` is the sha256 of the `sha256sum`-style listing
// ("<sha256hex>  <path>\n", sorted by path) of every source file the contract was
// compiled from (its own file and everything it imports).

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync, mkdirSync, unlinkSync, existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import solc from 'solc';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SRC_DIR = join(ROOT, 'contracts');
const OUT_DIR = join(ROOT, 'cic_seeding', 'chain', 'artifacts');

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys(value[key]);
    return out;
  }
  return value;
}

const serialize = (artifact) => JSON.stringify(sortKeys(artifact), null, 2) + '\n';

function compile() {
  const sources = {};
  for (const file of readdirSync(SRC_DIR).filter((f) => f.endsWith('.sol')).sort()) {
    // Source unit names are repository-relative so relative imports resolve without a callback.
    const unit = relative(ROOT, join(SRC_DIR, file)).split('\\').join('/');
    sources[unit] = { content: readFileSync(join(SRC_DIR, file), 'utf8') };
  }
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: 'paris',
      outputSelection: {
        '*': { '*': ['abi', 'metadata', 'evm.bytecode.object', 'evm.deployedBytecode.object'] },
      },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  for (const e of output.errors || []) process.stderr.write(e.formattedMessage + '\n');
  if (errors.length > 0) {
    process.stderr.write(`compile.mjs: ${errors.length} compiler error(s)\n`);
    process.exit(2);
  }

  const artifacts = {};
  for (const [unit, contracts] of Object.entries(output.contracts)) {
    for (const [name, c] of Object.entries(contracts)) {
      // Interfaces and abstract contracts have no creation code: nothing to deploy.
      if (!c.evm.bytecode.object) continue;
      if (artifacts[name]) throw new Error(`contract name ${name} defined twice (${unit})`);
      const used = Object.keys(JSON.parse(c.metadata).sources).sort();
      const listing = used.map((u) => `${sha256(sources[u].content)}  ${u}\n`).join('');
      artifacts[name] = serialize({
        contractName: name,
        abi: c.abi,
        bytecode: '0x' + c.evm.bytecode.object,
        deployedBytecode: '0x' + c.evm.deployedBytecode.object,
        compiler: solc.version(),
        sourceSha256: sha256(listing),
      });
    }
  }
  return artifacts;
}

function committedNames() {
  if (!existsSync(OUT_DIR)) return [];
  return readdirSync(OUT_DIR).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));
}

const check = process.argv.includes('--check');
const artifacts = compile();

if (check) {
  const differing = [];
  for (const [name, text] of Object.entries(artifacts)) {
    const path = join(OUT_DIR, `${name}.json`);
    if (!existsSync(path)) differing.push(`${name} (missing)`);
    else if (readFileSync(path, 'utf8') !== text) differing.push(`${name} (differs)`);
  }
  for (const name of committedNames()) {
    if (!(name in artifacts)) differing.push(`${name} (stale: no such contract)`);
  }
  if (differing.length > 0) {
    process.stderr.write('compile.mjs --check: artifacts out of date; run `node contracts/compile.mjs`:\n');
    for (const d of differing.sort()) process.stderr.write(`  ${d}\n`);
    process.exit(1);
  }
  process.stdout.write(`compile.mjs --check: ${Object.keys(artifacts).length} artifacts up to date\n`);
} else {
  mkdirSync(OUT_DIR, { recursive: true });
  for (const [name, text] of Object.entries(artifacts)) writeFileSync(join(OUT_DIR, `${name}.json`), text);
  for (const name of committedNames()) {
    if (!(name in artifacts)) unlinkSync(join(OUT_DIR, `${name}.json`));
  }
  process.stdout.write(`compile.mjs: wrote ${Object.keys(artifacts).sort().join(', ')} to ${relative(ROOT, OUT_DIR)}\n`);
}
