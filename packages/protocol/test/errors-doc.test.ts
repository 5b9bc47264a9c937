// Keeps docs/errors.md and ERROR_REGISTRY in sync both ways (STYLE.md, Errors): every code in the
// registry has a row with the same HTTP status, every row names a code that exists, in the
// registry's order. Also checks the shape of the codes and of HeptadError itself.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { ERROR_REGISTRY, type ErrorCode, HeptadError, isErrorCode, isHeptadError } from '../src/index.ts';

const DOC_PATH = new URL('../../../docs/errors.md', import.meta.url);
const HEADER = /^\|\s*code\s*\|\s*HTTP status\s*\|\s*meaning\s*\|\s*what to do\s*\|\s*$/;
/** The areas a code may start with; a new area is a deliberate change made here and in the doc. */
const AREAS = [
  'AUTH',
  'REQUEST',
  'ROUTE',
  'TENANT',
  'USER',
  'PRODUCT',
  'DEVICE',
  'BOOT',
  'ATTEST',
  'RUNTIME',
  'REPORT',
  'IMAGE',
  'DEPLOYMENT',
  'TUF',
  'APP',
  'BOARD',
  'TPM',
  'ROT',
  'PKI',
  'SERVICE',
  'INTERNAL',
  'CONFIG',
  'DATA',
  'CLI',
  'KEY',
  'BROKER',
  'MQTT',
  'UPDATE',
];
const CODE_SHAPE = /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$/;

interface DocRow {
  readonly line: number;
  readonly code: string;
  /** 0 for `—` (never crosses the API), as in the registry. */
  readonly status: number;
  readonly meaning: string;
  readonly whatToDo: string;
}

/** Splits one markdown table row into trimmed cells, honouring `\|` escapes. */
function cellsOf(row: string): string[] {
  const inner = row.trim().replace(/^\|/, '').replace(/\|$/, '');
  return inner.split(/(?<!\\)\|/).map((c) => c.trim().replaceAll('\\|', '|'));
}

/** Parses the one code table of docs/errors.md; structural problems are returned, not thrown. */
function parseErrorTable(markdown: string): { rows: DocRow[]; problems: string[] } {
  const lines = markdown.split(/\r?\n/);
  const problems: string[] = [];
  const headers = lines.flatMap((l, i) => (HEADER.test(l) ? [i] : []));
  if (headers.length !== 1) {
    return {
      rows: [],
      problems: [
        `expected exactly one "| code | HTTP status | meaning | what to do |" table, found ${headers.length}`,
      ],
    };
  }
  const start = (headers[0] ?? 0) + 2; // header, then the |---| separator
  if (!/^\|(\s*:?-+:?\s*\|)+\s*$/.test(lines[start - 1] ?? ''))
    problems.push(`line ${start}: separator row missing`);
  const rows: DocRow[] = [];
  for (let i = start; i < lines.length && (lines[i] ?? '').trimStart().startsWith('|'); i++) {
    const cells = cellsOf(lines[i] ?? '');
    const [codeCell = '', statusCell = '', meaning = '', whatToDo = ''] = cells;
    if (cells.length !== 4) problems.push(`line ${i + 1}: expected 4 cells, found ${cells.length}`);
    else if (meaning === '' || whatToDo === '')
      problems.push(`line ${i + 1}: meaning and what to do must not be empty`);
    const code = codeCell.replace(/^`(.*)`$/, '$1');
    let status = Number.NaN;
    if (statusCell === '—') status = 0;
    else if (/^[1-5]\d\d$/.test(statusCell)) status = Number(statusCell);
    else problems.push(`line ${i + 1}: HTTP status "${statusCell}" is neither a 3-digit status nor —`);
    rows.push({ line: i + 1, code, status, meaning, whatToDo });
  }
  return { rows, problems };
}

/** Every way the doc rows and the registry disagree; empty when they agree. */
function compareWithRegistry(
  rows: readonly DocRow[],
  registry: Readonly<Record<string, { status: number }>>,
): string[] {
  const problems: string[] = [];
  const documented = new Map<string, DocRow>();
  for (const row of rows) {
    if (documented.has(row.code)) problems.push(`line ${row.line}: ${row.code} is documented twice`);
    documented.set(row.code, row);
    const spec = Object.hasOwn(registry, row.code) ? registry[row.code] : undefined;
    if (spec === undefined)
      problems.push(`line ${row.line}: ${row.code} is documented but not in ERROR_REGISTRY`);
    else if (spec.status !== row.status) {
      problems.push(
        `line ${row.line}: ${row.code} has HTTP status ${row.status} in the doc, ${spec.status} in the registry`,
      );
    }
  }
  for (const code of Object.keys(registry)) {
    if (!documented.has(code)) problems.push(`${code} is in ERROR_REGISTRY but has no row in docs/errors.md`);
  }
  const registryOrder = Object.keys(registry).filter((c) => documented.has(c));
  const docOrder = rows
    .map((r) => r.code)
    .filter((c, i, all) => Object.hasOwn(registry, c) && all.indexOf(c) === i);
  if (problems.length === 0 && docOrder.join() !== registryOrder.join()) {
    problems.push('docs/errors.md lists the codes in another order than ERROR_REGISTRY');
  }
  return problems;
}

const registryCodes = Object.keys(ERROR_REGISTRY) as ErrorCode[];

describe('docs/errors.md', () => {
  const parsed = parseErrorTable(readFileSync(DOC_PATH, 'utf8'));

  test('has one well-formed code table', () => {
    assert.deepEqual(parsed.problems, []);
    assert.ok(parsed.rows.length > 0);
  });

  test('documents every registry code with its HTTP status, and only registry codes, in registry order', () => {
    assert.deepEqual(compareWithRegistry(parsed.rows, ERROR_REGISTRY), []);
  });

  test('the sync check reports a registry code without a doc row', () => {
    const added = { ...ERROR_REGISTRY, DEVICE_NEW_THING: { status: 400 } };
    assert.deepEqual(compareWithRegistry(parsed.rows, added), [
      'DEVICE_NEW_THING is in ERROR_REGISTRY but has no row in docs/errors.md',
    ]);
  });

  test('the sync check reports a doc row left for a removed code', () => {
    const { DEVICE_NOT_CLAIMED: _removed, ...removed } = ERROR_REGISTRY;
    const problems = compareWithRegistry(parsed.rows, removed);
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /DEVICE_NOT_CLAIMED is documented but not in ERROR_REGISTRY/);
  });

  test('the sync check reports a status that differs, a duplicate row and a wrong order', () => {
    const [first, second, ...rest] = parsed.rows;
    assert.ok(first && second);
    assert.equal(compareWithRegistry([{ ...first, status: 499 }, second, ...rest], ERROR_REGISTRY).length, 1);
    assert.equal(compareWithRegistry([first, first, second, ...rest], ERROR_REGISTRY).length, 1);
    assert.deepEqual(compareWithRegistry([second, first, ...rest], ERROR_REGISTRY), [
      'docs/errors.md lists the codes in another order than ERROR_REGISTRY',
    ]);
  });

  test('the table parser reports a status that is neither a number nor —, and a missing cell', () => {
    const doc = [
      '| code | HTTP status | meaning | what to do |',
      '| --- | --- | --- | --- |',
      '| `A_B` | four hundred | m | w |',
      '| `A_C` | — | m |',
    ].join('\n');
    assert.equal(parseErrorTable(doc).problems.length, 2);
    assert.equal(parseErrorTable(`${doc}\n\n${doc}`).problems.length, 1, 'two tables');
  });
});

describe('ERROR_REGISTRY', () => {
  for (const code of registryCodes) {
    test(`${code} is SCREAMING_SNAKE with a known area prefix`, () => {
      assert.match(code, CODE_SHAPE);
      assert.ok(
        AREAS.includes(code.split('_')[0] ?? ''),
        `${code}: unknown area; add it to AREAS here and a group to docs/errors.md`,
      );
    });
  }

  test('every status is 0 (never crosses the API) or an HTTP error status, with a title and a hint', () => {
    for (const [code, spec] of Object.entries(ERROR_REGISTRY)) {
      assert.ok(
        spec.status === 0 || (spec.status >= 400 && spec.status <= 599),
        `${code}: status ${spec.status}`,
      );
      assert.ok(spec.title.trim().length > 0, `${code}: empty title`);
      assert.ok(spec.hint.trim().length > 0, `${code}: empty hint`);
    }
  });
});

describe('HeptadError', () => {
  test('carries the code and the registry status of every code', () => {
    for (const code of registryCodes) {
      const e = new HeptadError(code);
      assert.ok(e instanceof Error);
      assert.ok(e instanceof HeptadError);
      assert.equal(e.name, 'HeptadError');
      assert.equal(e.code, code);
      assert.equal(e.status, ERROR_REGISTRY[code].status);
    }
  });

  test('keeps the cause, field problems and detail it was given', () => {
    const cause = new Error('underlying');
    const fields = [{ field: '/name', problem: 'is required' }];
    const e = new HeptadError('REQUEST_INVALID', 'bad request', {
      cause,
      fields,
      detail: { deviceIds: ['a'] },
    });
    assert.equal(e.cause, cause);
    assert.deepEqual(e.fields, fields);
    assert.deepEqual(e.detail, { deviceIds: ['a'] });
    const bare = new HeptadError('INTERNAL_ERROR');
    assert.deepEqual(bare.fields, []);
    assert.deepEqual(bare.detail, {});
    assert.equal(bare.cause, undefined);
  });

  test('isHeptadError accepts only HeptadError instances', () => {
    assert.equal(isHeptadError(new HeptadError('ROUTE_NOT_FOUND')), true);
    assert.equal(isHeptadError(Object.assign(new Error('x'), { code: 'ROUTE_NOT_FOUND' })), false);
    assert.equal(isHeptadError({ code: 'ROUTE_NOT_FOUND', status: 404 }), false);
    assert.equal(isHeptadError(undefined), false);
  });

  test('isErrorCode accepts registry codes and refuses anything else, inherited names included', () => {
    for (const code of registryCodes) assert.equal(isErrorCode(code), true);
    for (const s of [
      'toString',
      '__proto__',
      'constructor',
      'hasOwnProperty',
      'route_not_found',
      '',
      404,
      null,
    ]) {
      assert.equal(isErrorCode(s), false, String(s));
    }
  });
});
