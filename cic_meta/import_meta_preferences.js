#!/usr/bin/env node
// The older `node cic_meta/import_meta_preferences.js <datadir> [<number_of_users>]` (preferences documents): now the
// Python metadata import, `cic-seed import cic_meta <datadir>`, which writes every document
// of every imported user (see _python.js).
'use strict';

require('./_python')('import_meta_preferences.js');
