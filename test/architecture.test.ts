// Enforces the one-way package graph of DESIGN.md (Layout): cli, web, sim → service/device →
// protocol. Scans every source file under packages/*/src for import and export-from specifiers
// (static, type-only, side-effect, dynamic import('…') and require('…')) and checks that:
//   - a package imports @heptad/* packages only along the graph (protocol imports none);
//   - no package reaches into another by relative path (../../other/src/…);
//   - every bare npm import is declared in that package's own package.json dependencies, so a
//     dependency hoisted to the root node_modules for another package cannot be used by accident;
//   - built-ins are imported with the node: prefix.
// The scanner is a small tokenizer, so import-like text in comments, strings, template literals
// and regular expressions is not mistaken for an import; it is tested below on in-memory sources.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE_FILE = /\.(?:[mc]?ts|tsx|[mc]?js|jsx)$/;

/**
 * Which @heptad packages each package may import (by folder name). A new package must be added
 * here on purpose; the graph must stay acyclic (checked below).
 */
const ALLOWED_INTERNAL: Readonly<Record<string, readonly string[]>> = {
  protocol: [],
  sdk: ['protocol'],
  device: ['protocol'],
  service: ['protocol'],
  cli: ['protocol', 'service', 'device'],
  web: ['protocol', 'service', 'device'],
  sim: ['protocol', 'service', 'device'],
};

// ---------------------------------------------------------------------------------------------
// Scanner

type TokenKind = 'ident' | 'string' | 'template' | 'punct' | 'number' | 'regex';
interface Token {
  readonly kind: TokenKind;
  readonly value: string;
  readonly line: number;
}

/** Keywords after which a `/` starts a regular expression rather than a division. */
const REGEX_AFTER_KEYWORD = new Set([
  'return',
  'typeof',
  'instanceof',
  'in',
  'of',
  'new',
  'delete',
  'void',
  'throw',
  'case',
  'do',
  'else',
  'yield',
  'await',
]);

function isIdentStart(c: string): boolean {
  return /[A-Za-z_$]/.test(c) || c.charCodeAt(0) > 0x7f;
}
function isIdentPart(c: string): boolean {
  return /[\w$]/.test(c) || c.charCodeAt(0) > 0x7f;
}

/**
 * Splits JavaScript/TypeScript source into tokens, dropping comments. String and template
 * literals come out whole (a template with `${…}` is marked by a `${` in its value, its
 * expressions are tokenized as code); regular expression literals come out as one token.
 */
function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  // Each entry is an open `{`: true when it opened a template substitution `${`.
  const braces: boolean[] = [];
  let i = 0;
  let line = 1;
  const n = source.length;
  if (source.startsWith('#!')) while (i < n && source[i] !== '\n') i++;

  const push = (kind: TokenKind, value: string, at: number): void => {
    tokens.push({ kind, value, line: at });
  };
  const regexAllowed = (): boolean => {
    const prev = tokens.at(-1);
    if (prev === undefined) return true;
    if (prev.kind === 'punct') return prev.value !== ')' && prev.value !== ']' && prev.value !== '}';
    if (prev.kind === 'ident') return REGEX_AFTER_KEYWORD.has(prev.value);
    return false;
  };
  /** Reads template characters from i (just after ` or }) to the closing ` or an opening ${. */
  const readTemplate = (startLine: number, prefix: string): void => {
    let raw = prefix;
    while (i < n) {
      const c = source[i] ?? '';
      if (c === '\\') {
        raw += source.slice(i, i + 2);
        i += 2;
        continue;
      }
      if (c === '`') {
        i++;
        push('template', raw, startLine);
        return;
      }
      if (c === '$' && source[i + 1] === '{') {
        i += 2;
        push('template', `${raw}\${`, startLine);
        braces.push(true);
        return;
      }
      if (c === '\n') line++;
      raw += c;
      i++;
    }
    push('template', raw, startLine);
  };

  while (i < n) {
    const c = source[i] ?? '';
    const next = source[i + 1] ?? '';
    if (c === '\n') {
      line++;
      i++;
    } else if (/\s/.test(c)) {
      i++;
    } else if (c === '/' && next === '/') {
      while (i < n && source[i] !== '\n') i++;
    } else if (c === '/' && next === '*') {
      const end = source.indexOf('*/', i + 2);
      const stop = end === -1 ? n : end + 2;
      for (let k = i; k < stop; k++) if (source[k] === '\n') line++;
      i = stop;
    } else if (c === "'" || c === '"') {
      const at = line;
      let value = '';
      i++;
      while (i < n && source[i] !== c && source[i] !== '\n') {
        if (source[i] === '\\') {
          value += source[i + 1] ?? '';
          i += 2;
        } else {
          value += source[i];
          i++;
        }
      }
      i++;
      push('string', value, at);
    } else if (c === '`') {
      i++;
      readTemplate(line, '');
    } else if (c === '}' && braces.at(-1) === true) {
      braces.pop();
      i++;
      readTemplate(line, '}');
    } else if (c === '/' && regexAllowed()) {
      const at = line;
      let inClass = false;
      let j = i + 1;
      while (j < n && source[j] !== '\n') {
        const d = source[j];
        if (d === '\\') j++;
        else if (d === '[') inClass = true;
        else if (d === ']') inClass = false;
        else if (d === '/' && !inClass) break;
        j++;
      }
      j++;
      while (j < n && isIdentPart(source[j] ?? '')) j++;
      push('regex', source.slice(i, j), at);
      i = j;
    } else if (isIdentStart(c)) {
      const start = i;
      while (i < n && isIdentPart(source[i] ?? '')) i++;
      push('ident', source.slice(start, i), line);
    } else if (/[0-9]/.test(c)) {
      const start = i;
      while (i < n && /[\w.]/.test(source[i] ?? '')) i++;
      push('number', source.slice(start, i), line);
    } else {
      if (c === '{') braces.push(false);
      else if (c === '}') braces.pop();
      push('punct', c, line);
      i++;
    }
  }
  return tokens;
}

interface ImportRef {
  /** The module specifier, or undefined for a dynamic import whose specifier is computed. */
  readonly specifier: string | undefined;
  readonly line: number;
}

/** Every module specifier the source imports or re-exports, in order. */
function importsOf(source: string): ImportRef[] {
  const t = tokenize(source);
  const refs: ImportRef[] = [];
  const isWord = (k: number, word: string): boolean => t[k]?.kind === 'ident' && t[k]?.value === word;
  const isPunct = (k: number, p: string): boolean => t[k]?.kind === 'punct' && t[k]?.value === p;
  const literal = (k: number): string | undefined => {
    const tok = t[k];
    if (tok?.kind === 'string') return tok.value;
    if (tok?.kind === 'template' && !tok.value.endsWith('${')) return tok.value;
    return undefined;
  };
  for (let k = 0; k < t.length; k++) {
    const tok = t[k];
    if (tok === undefined) continue;
    // import … from 'x' · export … from 'x' · import type … from 'x'
    if (tok.kind === 'string' && isWord(k - 1, 'from')) refs.push({ specifier: tok.value, line: tok.line });
    // import 'x' (side effect); `obj.import` is a property, not the keyword
    else if (tok.kind === 'string' && isWord(k - 1, 'import') && !isPunct(k - 2, '.')) {
      refs.push({ specifier: tok.value, line: tok.line });
    }
    // import('x') · typeof import('x') · require('x') · import x = require('x')
    else if ((isWord(k, 'import') || isWord(k, 'require')) && !isPunct(k - 1, '.') && isPunct(k + 1, '(')) {
      const spec = literal(k + 2);
      const closed = isPunct(k + 3, ')') || isPunct(k + 3, ',');
      if (spec !== undefined && closed) refs.push({ specifier: spec, line: tok.line });
      else if (tok.value === 'import') refs.push({ specifier: undefined, line: tok.line });
    }
  }
  return refs;
}

// ---------------------------------------------------------------------------------------------
// Rules

interface PackageInfo {
  /** Folder name under packages/, e.g. "service". */
  readonly dir: string;
  readonly name: string;
  /** Absolute path of the package folder. */
  readonly root: string;
  /** dependencies, optionalDependencies and peerDependencies of its package.json. */
  readonly dependencies: ReadonlySet<string>;
  /** Keys of the "imports" field (#subpath imports). */
  readonly imports: ReadonlySet<string>;
}

/** The npm package a bare specifier names: `a/b/c` → `a`, `@s/a/b` → `@s/a`. */
function packageNameOf(specifier: string): string {
  const parts = specifier.split('/');
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
}

/** Every rule the imports of one file break; empty when the file is fine. */
function checkFile(file: string, source: string, pkg: PackageInfo): string[] {
  const where = (line: number) => `${relative(ROOT, file)}:${line}`;
  const problems: string[] = [];
  for (const { specifier: spec, line } of importsOf(source)) {
    if (spec === undefined) {
      problems.push(
        `${where(line)}: dynamic import with a computed specifier cannot be checked; use a literal`,
      );
    } else if (spec.startsWith('node:')) {
      if (!isBuiltin(spec)) problems.push(`${where(line)}: "${spec}" is not a Node.js built-in`);
    } else if (spec === '.' || spec === '..' || spec.startsWith('./') || spec.startsWith('../')) {
      const target = relative(pkg.root, resolve(dirname(file), spec));
      if (target === '..' || target.startsWith(`..${'/'}`) || isAbsolute(target)) {
        problems.push(
          `${where(line)}: "${spec}" reaches outside ${pkg.name} by relative path; import the other package by name`,
        );
      }
    } else if (spec.startsWith('/') || spec.startsWith('file:') || /^[a-z][a-z0-9+.-]*:/i.test(spec)) {
      problems.push(`${where(line)}: "${spec}" is an absolute path or URL; import packages by name`);
    } else if (spec.startsWith('#')) {
      if (!pkg.imports.has(spec))
        problems.push(`${where(line)}: "${spec}" is not in the "imports" of ${pkg.name}`);
    } else if (isBuiltin(spec)) {
      problems.push(`${where(line)}: import the built-in "${spec}" as "node:${spec}"`);
    } else {
      const name = packageNameOf(spec);
      if (name.startsWith('@heptad/') && name !== pkg.name) {
        const allowed = ALLOWED_INTERNAL[pkg.dir] ?? [];
        if (!allowed.includes(name.slice('@heptad/'.length))) {
          const list =
            allowed.length > 0 ? allowed.map((d) => `@heptad/${d}`).join(', ') : 'no @heptad package';
          problems.push(
            `${where(line)}: ${pkg.name} may not import ${name} (one-way graph: it may import ${list})`,
          );
          continue;
        }
      }
      if (name !== pkg.name && !pkg.dependencies.has(name)) {
        problems.push(
          `${where(line)}: "${name}" is not declared in the dependencies of ${relative(ROOT, join(pkg.root, 'package.json'))}`,
        );
      }
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// The repository

function readPackage(dir: string): PackageInfo {
  const root = join(ROOT, 'packages', dir);
  const json = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    name?: string;
    dependencies?: Record<string, string>;
    optionalDependencies?: Record<string, string>;
    peerDependencies?: Record<string, string>;
    imports?: Record<string, unknown>;
  };
  return {
    dir,
    name: json.name ?? '',
    root,
    dependencies: new Set([
      ...Object.keys(json.dependencies ?? {}),
      ...Object.keys(json.optionalDependencies ?? {}),
      ...Object.keys(json.peerDependencies ?? {}),
    ]),
    imports: new Set(Object.keys(json.imports ?? {})),
  };
}

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : sourceFiles(path);
    return e.isFile() && SOURCE_FILE.test(e.name) && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

const packages = readdirSync(join(ROOT, 'packages'), { withFileTypes: true })
  .filter((e) => e.isDirectory() && existsSync(join(ROOT, 'packages', e.name, 'package.json')))
  .map((e) => readPackage(e.name));

describe('package graph', () => {
  test('every package is in the graph and named @heptad/<folder>', () => {
    assert.ok(packages.length >= 3);
    for (const pkg of packages) {
      assert.ok(
        pkg.dir in ALLOWED_INTERNAL,
        `packages/${pkg.dir} is not in ALLOWED_INTERNAL; decide where it sits`,
      );
      assert.equal(pkg.name, `@heptad/${pkg.dir}`);
    }
  });

  test('the allowed graph has no cycles', () => {
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (d: string, path: readonly string[]): void => {
      if (state.get(d) === 'done') return;
      assert.notEqual(state.get(d), 'visiting', `cycle: ${[...path, d].join(' → ')}`);
      state.set(d, 'visiting');
      for (const next of ALLOWED_INTERNAL[d] ?? []) visit(next, [...path, d]);
      state.set(d, 'done');
    };
    for (const d of Object.keys(ALLOWED_INTERNAL)) visit(d, []);
  });

  for (const pkg of packages) {
    test(`packages/${pkg.dir}/package.json declares only the @heptad packages it may import`, () => {
      const allowed = ALLOWED_INTERNAL[pkg.dir] ?? [];
      const declared = [...pkg.dependencies].filter((d) => d.startsWith('@heptad/'));
      assert.deepEqual(
        declared.filter((d) => !allowed.includes(d.slice('@heptad/'.length))),
        [],
      );
    });

    test(`packages/${pkg.dir}/src imports only along the graph and only declared dependencies`, () => {
      const files = sourceFiles(join(pkg.root, 'src'));
      const problems = files.flatMap((f) => checkFile(f, readFileSync(f, 'utf8'), pkg));
      assert.deepEqual(problems, []);
    });
  }

  test('the scan sees the real imports (it is not vacuously passing)', () => {
    const protocol = packages.find((p) => p.dir === 'protocol');
    assert.ok(protocol);
    const specs = sourceFiles(join(protocol.root, 'src')).flatMap((f) =>
      importsOf(readFileSync(f, 'utf8')).map((r) => r.specifier),
    );
    assert.ok(specs.includes('@peculiar/x509'));
    assert.ok(specs.includes('node:crypto'));
    assert.ok(specs.includes('./errors.ts'));
  });
});

// ---------------------------------------------------------------------------------------------
// The scanner and the rules, on in-memory sources

describe('import scanner', () => {
  test('finds static, type-only, side-effect, re-export, dynamic and require imports', () => {
    const source = [
      "import a from 'static-default';",
      'import { b, type C } from "static-named";',
      "import type { D } from 'type-only';",
      "import * as e from 'namespace';",
      "import 'side-effect';",
      "export * from 'reexport-all';",
      "export { f } from 'reexport-named';",
      "export type { G } from 'reexport-type';",
      "const h = await import('dynamic');",
      'const i = await import(`dynamic-template`);',
      "type J = typeof import('type-query');",
      "let k: import('import-type').K;",
      "import l = require('ts-require');",
      "const m = require('cjs-require');",
      "import n from 'with-attrs' with { type: 'json' };",
    ].join('\n');
    assert.deepEqual(
      importsOf(source).map((r) => r.specifier),
      [
        'static-default',
        'static-named',
        'type-only',
        'namespace',
        'side-effect',
        'reexport-all',
        'reexport-named',
        'reexport-type',
        'dynamic',
        'dynamic-template',
        'type-query',
        'import-type',
        'ts-require',
        'cjs-require',
        'with-attrs',
      ],
    );
  });

  test('ignores import-like text in comments, strings, templates, regexes and calls', () => {
    const source = [
      "// import a from 'in-line-comment';",
      "/* import b from 'in-block-comment';",
      "   export * from 'still-in-block-comment'; */",
      `const s = "import c from 'in-string'";`,
      `const t = \`import d from \${"from"} 'in-template'\`;`,
      "const r = /from 'in-regex'/;",
      "const magic = Buffer.from('HPK1');",
      "const o = { from: 'object-key' };",
      "const p = Array.from('abc');",
      "loader.import('method-call');",
      "const url = import.meta.url; // import('in-comment')",
      "const q = a / 2; const w = b / 3; // division, not a regex: from 'x'",
      "import real from 'real';",
    ].join('\n');
    assert.deepEqual(
      importsOf(source).map((r) => r.specifier),
      ['real'],
    );
  });

  test('reports the line of each import', () => {
    assert.deepEqual(importsOf("\n\n/*\n*/\nimport x from 'x';"), [{ specifier: 'x', line: 5 }]);
  });

  test('reports a dynamic import whose specifier is computed', () => {
    assert.deepEqual(importsOf(`const m = await import(name);\nconst n = await import(\`pkg-\${v}\`);`), [
      { specifier: undefined, line: 1 },
      { specifier: undefined, line: 2 },
    ]);
  });

  test('names the npm package of a specifier', () => {
    assert.equal(packageNameOf('kysely/migration'), 'kysely');
    assert.equal(packageNameOf('@peculiar/x509'), '@peculiar/x509');
    assert.equal(packageNameOf('@fastify/swagger-ui/static'), '@fastify/swagger-ui');
  });
});

describe('import rules', () => {
  const fake = (dir: string, dependencies: readonly string[]): PackageInfo => ({
    dir,
    name: `@heptad/${dir}`,
    root: join(ROOT, 'packages', dir),
    dependencies: new Set(dependencies),
    imports: new Set(),
  });
  const protocol = fake('protocol', ['@peculiar/x509']);
  const service = fake('service', ['@heptad/protocol', 'fastify', 'kysely']);
  const cli = fake('cli', ['@heptad/protocol', '@heptad/service']);
  const check = (pkg: PackageInfo, source: string, file = 'src/x/file.ts') =>
    checkFile(join(pkg.root, file), source, pkg);

  const cases: ReadonlyArray<readonly [string, PackageInfo, string, number]> = [
    [
      'ok/protocol imports a built-in and its own dependency',
      protocol,
      "import 'node:crypto';\nimport '@peculiar/x509';",
      0,
    ],
    ['ok/protocol imports a sibling file', protocol, "import { e } from '../errors.ts';", 0],
    ['refused/protocol imports @heptad/service', protocol, "import { x } from '@heptad/service';", 1],
    [
      'refused/protocol imports @heptad/cli with import type',
      protocol,
      "import type { X } from '@heptad/cli';",
      1,
    ],
    ['refused/protocol imports @heptad/device dynamically', protocol, "await import('@heptad/device');", 1],
    ['refused/protocol imports an npm package it does not declare', protocol, "import pino from 'pino';", 1],
    [
      'refused/protocol imports a built-in without node:',
      protocol,
      "import { createHash } from 'crypto';",
      1,
    ],
    ['refused/protocol imports a node: name that is not a built-in', protocol, "import 'node:nonsense';", 1],
    [
      'ok/service imports @heptad/protocol and a declared subpath',
      service,
      "import '@heptad/protocol';\nimport 'kysely/migration';",
      0,
    ],
    ['refused/service imports @heptad/cli', service, "export { run } from '@heptad/cli';", 1],
    ['refused/service imports @heptad/web', service, "import '@heptad/web';", 1],
    ['refused/service imports @heptad/sim', service, "import '@heptad/sim';", 1],
    ['refused/service imports @heptad/device', service, "import '@heptad/device';", 1],
    ['ok/cli imports protocol and service', cli, "import '@heptad/protocol';\nimport '@heptad/service';", 0],
    ['refused/cli imports @heptad/device it does not declare yet', cli, "import '@heptad/device';", 1],
    [
      'refused/cli reaches into service by relative path',
      cli,
      "import { a } from '../../../service/src/app.ts';",
      1,
    ],
    ['refused/cli reaches out of its package to the root', cli, "import '../../../../scripts/x.ts';", 1],
    ['refused/an absolute path', cli, "import '/work/main/packages/service/src/app.ts';", 1],
    ['refused/a file: URL', cli, "import 'file:///tmp/x.js';", 1],
    ['refused/a #subpath import not declared', cli, "import '#internal';", 1],
    ['refused/a computed dynamic import', cli, 'await import(moduleName);', 1],
  ];
  for (const [name, pkg, source, expected] of cases) {
    test(name, () => {
      const problems = check(pkg, source);
      assert.equal(problems.length, expected, problems.join('\n'));
    });
  }

  test('names the file and line of a forbidden import', () => {
    assert.deepEqual(check(protocol, "\nimport { x } from '@heptad/service';", 'src/device-id.ts'), [
      'packages/protocol/src/device-id.ts:2: @heptad/protocol may not import @heptad/service (one-way graph: it may import no @heptad package)',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// The device's trusted computing base (issue 4, DESIGN.md "small trusted computing base"): the
// code that decides which runtime runs — choose a slot, verify it, measure it — imports Node
// built-ins, the package verifier from @heptad/protocol, the storage layer and the root of trust,
// nothing else, and stays small enough to review whole.

const TCB_FILES = ['bootloader.ts', 'slots.ts', 'platform-keys.ts', 'measure.ts'];
const TCB_LINE_BUDGET = 500;

describe('device trusted computing base', () => {
  const bootDir = join(ROOT, 'packages', 'device', 'src', 'boot');
  const allowedRelative = (from: string, spec: string) => {
    const target = relative(join(ROOT, 'packages', 'device', 'src'), resolve(dirname(from), spec));
    return target.startsWith(`boot/`) || target === 'state/storage.ts' || target.startsWith('rot/');
  };
  for (const name of TCB_FILES) {
    test(`boot/${name} imports only node:*, @heptad/protocol, boot/, state/storage.ts and rot/`, () => {
      const file = join(bootDir, name);
      const bad = importsOf(readFileSync(file, 'utf8'))
        .map((r) => r.specifier ?? '(computed)')
        .filter(
          (s) =>
            !(
              s.startsWith('node:') ||
              s === '@heptad/protocol' ||
              (s.startsWith('.') && allowedRelative(file, s))
            ),
        );
      assert.deepEqual(bad, []);
    });
  }
  test(`the verify-and-measure core is under ${TCB_LINE_BUDGET} lines`, () => {
    const lines = TCB_FILES.reduce(
      (n, f) => n + readFileSync(join(bootDir, f), 'utf8').split('\n').length,
      0,
    );
    assert.ok(lines < TCB_LINE_BUDGET, `${lines} lines`);
    assert.ok(lines > 100, 'the files were read');
  });
});
