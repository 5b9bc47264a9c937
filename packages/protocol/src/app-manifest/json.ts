/**
 * Small helpers shared by the app manifest and board definition parsers: reading untrusted JSON
 * text into a value, JSON pointers, and reading own properties of plain objects only.
 */
import { type ErrorCode, type FieldError, HeptadError } from '../errors.ts';

/** RFC 6901: "~" → "~0", "/" → "~1". */
export function pointer(parent: string, key: string | number): string {
  return `${parent}/${String(key).replaceAll('~', '~0').replaceAll('/', '~1')}`;
}

/** A JSON object as JSON.parse makes it: plain prototype, not an array. */
export function isJsonObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** An own property only: `toString` or `__proto__` are never read from a prototype. */
export function own(obj: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

/** Collects field problems; `fail` throws one error listing all of them. */
export class Problems {
  readonly list: FieldError[] = [];
  add(field: string, problem: string): void {
    this.list.push({ field, problem });
  }
  get empty(): boolean {
    return this.list.length === 0;
  }
  throwIfAny(code: ErrorCode, message: string): void {
    if (this.list.length > 0) throw new HeptadError(code, message, { fields: this.list });
  }
}

/**
 * Unknown keys of an object, each reported; a key equal to a known one ignoring case gets a hint,
 * since keys are case-sensitive (§2). Keys in `reported` were reported with their own problem.
 */
export function refuseUnknownKeys(
  obj: Record<string, unknown>,
  known: readonly string[],
  at: string,
  problems: Problems,
  what: string,
  reported: ReadonlySet<string> = new Set(),
): void {
  for (const k of Object.keys(obj)) {
    if (known.includes(k) || reported.has(k)) continue;
    const near = known.find((n) => n.toLowerCase() === k.toLowerCase());
    problems.add(
      pointer(at, k),
      near === undefined
        ? `is not ${what}`
        : `is not ${what} (keys are case-sensitive: did you mean "${near}"?)`,
    );
  }
}

/**
 * JSON text (a string, or bytes in UTF-8) to a value: at most maxBytes, no byte order mark, valid
 * UTF-8, valid JSON. Every failure is the given code with the field "" (the whole document).
 */
export function parseJsonText(
  text: string | Uint8Array,
  maxBytes: number,
  code: ErrorCode,
  what: string,
): unknown {
  const fail = (problem: string) =>
    new HeptadError(code, `the ${what} ${problem}`, { fields: [{ field: '', problem }] });
  let s: string;
  if (typeof text === 'string') {
    if (Buffer.byteLength(text) > maxBytes) throw fail(`is larger than ${maxBytes} bytes`);
    s = text;
  } else {
    if (text.byteLength > maxBytes) throw fail(`is larger than ${maxBytes} bytes`);
    try {
      s = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(text);
    } catch {
      throw fail('is not valid UTF-8');
    }
  }
  if (s.startsWith('\uFEFF')) throw fail('starts with a byte order mark');
  try {
    return JSON.parse(s);
  } catch {
    throw fail('is not valid JSON');
  }
}

// C0 controls and DEL, built from code points so the source holds no control characters.
const CONTROL = new RegExp(
  `[${String.fromCharCode(0)}-${String.fromCharCode(0x1f)}${String.fromCharCode(0x7f)}]`,
);

/** Well-formed Unicode (no lone surrogates from "\ud800" escapes), no NUL or other C0 controls. */
export function isCleanString(v: unknown): v is string {
  return typeof v === 'string' && v.isWellFormed() && !CONTROL.test(v);
}
