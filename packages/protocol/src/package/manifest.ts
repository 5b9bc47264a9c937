/**
 * The manifest (§3), file paths (§4.1) and canonical JSON: pure checks shared by the builder and
 * the verifier, so both sides accept exactly the same packages.
 */
import { type FieldError, HeptadError } from '../errors.ts';
import {
  type ImageManifest,
  MAX_JSON_DEPTH,
  MAX_PATH_BYTES,
  MAX_PATH_COMPONENT_BYTES,
  type PackageLimits,
} from './format.ts';

/**
 * The one encoding of a JSON value (§3.1): object keys sorted by UTF-16 code units, no
 * whitespace, strings and numbers as JSON.stringify writes them. The verifier re-serializes the
 * parsed manifest and requires the same bytes, so two parsers can never read different values
 * from the signed bytes (duplicate keys, escapes, number spellings, BOM all change the bytes).
 */
export function canonicalJson(value: unknown, pointer = '', depth = 0): string {
  // Depth first: a deeply nested app manifest must not exhaust the verifier's stack.
  if (depth > MAX_JSON_DEPTH) throw invalidManifest([{ field: pointer, problem: 'nests too deeply' }]);
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' && Number.isFinite(value)) return JSON.stringify(value);
  if (Array.isArray(value)) {
    return `[${Array.from(value, (v, i) => canonicalJson(v, `${pointer}/${i}`, depth + 1)).join(',')}]`;
  }
  if (typeof value === 'object' && isPlainObject(value)) {
    const obj = value as Record<string, unknown>;
    const members = Object.keys(obj)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k], `${pointer}/${k}`, depth + 1)}`);
    return `{${members.join(',')}}`;
  }
  throw invalidManifest([{ field: pointer, problem: 'is not a JSON value' }]);
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function invalidManifest(fields: FieldError[]): HeptadError {
  return new HeptadError('IMAGE_MANIFEST_INVALID', 'the image manifest is not valid', { fields });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
// The regular expression of semver.org (2.0.0), anchored; no leading "v", no leading zeros.
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;
const MAX_VERSION_LENGTH = 128;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const MAX_SECURITY_VERSION = 2 ** 31 - 1;
const FIELDS = new Set([
  'componentId',
  'imageId',
  'name',
  'version',
  'securityVersion',
  'type',
  'entryPoint',
  'appManifest',
  'payloadSha256',
  'payloadSize',
  'createdAt',
]);

/**
 * Checks every manifest field and reports all problems at once (IMAGE_MANIFEST_INVALID with
 * fields), or IMAGE_LIMIT_EXCEEDED for an app manifest over its size limit. Unknown fields are
 * refused: a field this version ignores could be one a later verifier relies on.
 */
export function assertManifest(value: unknown, limits: PackageLimits): asserts value is ImageManifest {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidManifest([{ field: '', problem: 'must be a JSON object' }]);
  }
  const m = value as Record<string, unknown>;
  const problems: FieldError[] = [];
  const bad = (field: string, problem: string) => problems.push({ field: `/${field}`, problem });
  for (const k of Object.keys(m)) if (!FIELDS.has(k)) bad(k, 'is not a manifest field');
  const str = (k: string, re: RegExp, problem: string) => {
    const v = m[k];
    if (typeof v !== 'string' || !re.test(v)) bad(k, problem);
  };
  str('componentId', UUID, 'must be a lowercase UUID');
  str('imageId', UUID, 'must be a lowercase UUID');
  str('name', NAME, 'must be 1-64 of [A-Za-z0-9._-], starting with a letter or digit');
  const version = m['version'];
  if (typeof version !== 'string' || version.length > MAX_VERSION_LENGTH || !SEMVER.test(version)) {
    bad('version', 'must be a Semantic Versioning 2.0.0 version of at most 128 characters');
  }
  const sv = m['securityVersion'];
  if (!Number.isInteger(sv) || (sv as number) < 0 || (sv as number) > MAX_SECURITY_VERSION) {
    bad('securityVersion', 'must be an integer from 0 to 2147483647');
  }
  const type = m['type'];
  if (type !== 'application' && type !== 'runtime') bad('type', 'must be "application" or "runtime"');
  const entryPoint = m['entryPoint'];
  if (typeof entryPoint !== 'string' || pathProblem(entryPoint) !== undefined) {
    bad('entryPoint', 'must be a valid payload file path');
  }
  const app = m['appManifest'];
  if (type === 'application' && app === undefined) bad('appManifest', 'is required for an application');
  if (type === 'runtime' && app !== undefined) bad('appManifest', 'is not allowed for a runtime');
  let appSize = 0;
  if (app !== undefined) {
    if (typeof app !== 'object' || app === null || Array.isArray(app))
      bad('appManifest', 'must be an object');
    else appSize = Buffer.byteLength(canonicalJson(app, '/appManifest', 1));
  }
  str('payloadSha256', SHA256_HEX, 'must be 64 lowercase hex characters');
  const size = m['payloadSize'];
  if (!Number.isSafeInteger(size) || (size as number) < 4)
    bad('payloadSize', 'must be an integer of at least 4');
  const createdAt = m['createdAt'];
  if (typeof createdAt !== 'string' || !isIsoUtc(createdAt)) {
    bad('createdAt', 'must be an ISO-8601 UTC time as YYYY-MM-DDTHH:MM:SS.sssZ');
  }
  if (problems.length > 0) throw invalidManifest(problems);
  if (appSize > limits.maxAppManifestSize) {
    throw new HeptadError('IMAGE_LIMIT_EXCEEDED', `the app manifest is ${appSize} bytes`, {
      detail: { limit: limits.maxAppManifestSize },
    });
  }
}

function isIsoUtc(s: string): boolean {
  const t = Date.parse(s);
  return Number.isFinite(t) && new Date(t).toISOString() === s;
}

const PATH_CHARS = /^[A-Za-z0-9._/-]*$/;

/**
 * §4.1. Why each rule: a leading "/" or a ".." component would write outside the install folder
 * (path traversal); "." and empty components make two spellings of one file; the character set
 * excludes "\\" (a separator on some systems), NUL (ends the string in C), control characters and
 * non-ASCII (Unicode normalization makes two spellings of one name). Returns the problem or
 * undefined.
 */
export function pathProblem(path: string): string | undefined {
  if (!PATH_CHARS.test(path)) return 'has a character outside [A-Za-z0-9._/-]';
  if (path.length > MAX_PATH_BYTES) return `is longer than ${MAX_PATH_BYTES} bytes`;
  if (path.startsWith('/')) return 'is absolute';
  for (const c of path.split('/')) {
    if (c === '') return 'has an empty component';
    if (c === '.' || c === '..') return `has a "${c}" component`;
    if (c.length > MAX_PATH_COMPONENT_BYTES)
      return `has a component longer than ${MAX_PATH_COMPONENT_BYTES} bytes`;
  }
  return undefined;
}

export function assertPath(path: string): void {
  const problem = pathProblem(path);
  if (problem !== undefined) {
    throw new HeptadError('IMAGE_PATH_INVALID', `file path ${JSON.stringify(path)} ${problem}`, {
      detail: { path },
    });
  }
}

/**
 * §4.1: no two paths equal or equal ignoring ASCII case (a case-insensitive file system would
 * install one over the other, so the file checked would not be the file run), and no path that
 * is a file and also a folder of another path. Paths must already be valid.
 */
export function assertNoConflicts(paths: readonly string[]): void {
  const files = new Set<string>();
  for (const p of paths) {
    const folded = p.toLowerCase();
    if (files.has(folded)) throw conflict(p, 'is given twice (ignoring case)');
    files.add(folded);
  }
  for (const p of files) {
    for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) {
      if (files.has(p.slice(0, i))) throw conflict(p, 'is inside a path that is a file');
    }
  }
}

function conflict(path: string, problem: string): HeptadError {
  return new HeptadError('IMAGE_PATH_CONFLICT', `file path ${JSON.stringify(path)} ${problem}`, {
    detail: { path },
  });
}
