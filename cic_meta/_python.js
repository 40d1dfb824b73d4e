// The older Node metadata scripts, kept as thin aliases: each runs the Python metadata import,
// `python -m cic_seeding.cli.main import cic_meta <datadir>` (= `cic-seed import cic_meta`),
// which writes all four documents of every imported user (person, phone pointer, custom,
// preferences) and resumes where a previous run stopped; so whichever of the three scripts
// runs first does the work and the others find nothing left to write.
//
// Python: the checkout's .venv (scripts/setup.sh makes it), else python3 on PATH.
'use strict';

const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

module.exports = function run(script) {
  const args = process.argv.slice(2);
  const positional = args.filter((a) => !a.startsWith('-'));
  if (positional.length < 1 || positional.length > 2
      || (positional[1] !== undefined && !/^[0-9]+$/.test(positional[1]))) {
    console.error(`error: usage: node cic_meta/${script} <datadir> [<number_of_users>]`);
    process.exit(2);
  }
  const root = path.resolve(__dirname, '..');
  const venv = path.join(root, '.venv', 'bin', 'python');
  const python = fs.existsSync(venv) ? venv : 'python3';
  const env = { ...process.env };
  env.PYTHONPATH = env.PYTHONPATH ? `${root}${path.delimiter}${env.PYTHONPATH}` : root;
  // the count of users the older script waited for: the import writes every user the chain
  // importer has imported, then exits (a rerun picks up users imported since)
  const done = spawnSync(python, ['-m', 'cic_seeding.cli.main', 'import', 'cic_meta',
    positional[0], ...args.filter((a) => a.startsWith('-'))], { stdio: 'inherit', env });
  if (done.error) {
    console.error(`error: cannot run ${python}: ${done.error.message} (activate the `
      + 'virtual environment of scripts/setup.sh)');
    process.exit(2);
  }
  process.exit(done.status === null ? 1 : done.status);
};
