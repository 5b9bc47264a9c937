import { type ErrorCode, HeptadError } from '@heptad/protocol';

/** True when `e` is a unique-constraint violation from SQLite or PostgreSQL. */
export function isUniqueViolation(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  const err = e as { code?: unknown; errcode?: unknown; message?: unknown };
  if (err.code === '23505') return true; // PostgreSQL unique_violation
  if (err.errcode === 2067 || err.errcode === 1555) return true; // SQLITE_CONSTRAINT_UNIQUE / PRIMARYKEY
  return typeof err.message === 'string' && err.message.includes('UNIQUE constraint failed');
}

/**
 * Runs an insert/update and turns a unique-constraint race into the domain's coded conflict.
 * The domain checks first (for a clear error in the common case); this covers two writers racing.
 */
export async function mapUnique<T>(code: ErrorCode, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (isUniqueViolation(e)) throw new HeptadError(code, undefined, { cause: e });
    throw e;
  }
}
