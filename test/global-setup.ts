// Global setup for `node --test --test-global-setup=test/global-setup.ts` (see ./run-tests).
//
// Starts one throwaway PostgreSQL cluster for the whole test run and publishes its URL as
// HEPTAD_TEST_PG_URL. Test files call createDatabase(process.env.HEPTAD_TEST_PG_URL, '<name>') from
// test/support/postgres.ts to get a database of their own, so files can run in parallel.
//
// How the URL reaches the test files (verified with Node 24.21): node --test runs globalSetup in the
// runner's own process, before it spawns any test file, and each test file's child process
// (default --test-isolation=process) gets a copy of the runner's process.env taken at spawn time. So
// setting process.env here is enough; no file or other channel is needed. It works the same with
// --test-isolation=none (same process). node --test also runs globalTeardown on SIGINT and SIGTERM;
// only SIGKILL leaves a cluster behind, and the next run's startPostgres() removes it.
//
//   HEPTAD_TEST_PG_URL=postgres://…  use that server instead of starting one (nothing is stopped)
//   HEPTAD_TEST_PG=off               no PostgreSQL at all (tests that need it must skip)

import { startPostgres, type TestPostgres } from './support/postgres.ts';

let cluster: TestPostgres | undefined;

export async function globalSetup(): Promise<void> {
  if (process.env['HEPTAD_TEST_PG'] === 'off' || process.env['HEPTAD_TEST_PG_URL']) return;
  cluster = await startPostgres({ log: (s) => process.stderr.write(`${s}\n`) });
  process.env['HEPTAD_TEST_PG_URL'] = cluster.url;
}

export async function globalTeardown(): Promise<void> {
  const c = cluster;
  cluster = undefined;
  if (c) {
    delete process.env['HEPTAD_TEST_PG_URL'];
    await c.stop();
  }
}
