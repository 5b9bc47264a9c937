// Checks the test harness itself: test/global-setup.ts started PostgreSQL (or HEPTAD_TEST_PG_URL
// names one), its URL reached this file's process, and createDatabase() gives a usable database.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { createDatabase } from './support/postgres.ts';

const pgOff = process.env['HEPTAD_TEST_PG'] === 'off';

test('HEPTAD_TEST_PG_URL reaches test files and answers SELECT 1', {
  skip: pgOff && 'HEPTAD_TEST_PG=off',
}, async () => {
  const url = process.env['HEPTAD_TEST_PG_URL'];
  assert.ok(
    url,
    'HEPTAD_TEST_PG_URL is not set: was node --test run with --test-global-setup=test/global-setup.ts?',
  );
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ one: number }>('SELECT 1 AS one');
    assert.deepEqual(rows, [{ one: 1 }]);
  } finally {
    await client.end();
  }
});

test('createDatabase gives each test file a fresh database', {
  skip: pgOff && 'HEPTAD_TEST_PG=off',
}, async () => {
  const url = process.env['HEPTAD_TEST_PG_URL'];
  assert.ok(url);
  const dbUrl = await createDatabase(url, 'harness_test');
  assert.match(dbUrl, /\/harness_test$/);
  const client = new pg.Client({ connectionString: dbUrl });
  await client.connect();
  try {
    await client.query('CREATE TABLE t (x int)');
    const { rows } = await client.query<{ db: string }>('SELECT current_database() AS db');
    assert.deepEqual(rows, [{ db: 'harness_test' }]);
  } finally {
    await client.end();
  }
  // Fresh means fresh: creating it again drops what was there.
  const again = new pg.Client({ connectionString: await createDatabase(url, 'harness_test') });
  await again.connect();
  try {
    const { rows } = await again.query("SELECT to_regclass('public.t') AS t");
    assert.deepEqual(rows, [{ t: null }]);
  } finally {
    await again.end();
  }
});
