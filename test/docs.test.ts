import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cliReference, openApiDocument } from '../scripts/gen-docs.ts';

const ROOT = join(import.meta.dirname, '..');

test('docs/openapi.json is the document the service serves (regenerate with node scripts/gen-docs.ts)', async () => {
  assert.equal(readFileSync(join(ROOT, 'docs/openapi.json'), 'utf8'), await openApiDocument());
});

test('docs/cli.md is generated from the CLI command table (regenerate with node scripts/gen-docs.ts)', () => {
  assert.equal(readFileSync(join(ROOT, 'docs/cli.md'), 'utf8'), cliReference());
});

test('every OpenAPI operation has a summary, tags, a 4xx problem response and a security rule', async () => {
  const doc = JSON.parse(await openApiDocument()) as {
    openapi: string;
    paths: Record<
      string,
      Record<
        string,
        { summary?: string; tags?: string[]; responses: Record<string, unknown>; security?: unknown[] }
      >
    >;
  };
  assert.equal(doc.openapi, '3.1.0');
  const problems: string[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const where = `${method.toUpperCase()} ${path}`;
      if (!op.summary) problems.push(`${where}: no summary`);
      if (!op.tags?.length) problems.push(`${where}: no tags`);
      if (path.startsWith('/v1/') && !Object.keys(op.responses).some((s) => s.startsWith('4'))) {
        problems.push(`${where}: no 4xx response documented`);
      }
    }
  }
  assert.deepEqual(problems, []);
});
