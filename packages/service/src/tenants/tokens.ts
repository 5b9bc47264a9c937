import { createHash, randomBytes } from 'node:crypto';

/** API tokens: `hpt_` + 32 random bytes, base64url. Only their SHA-256 is stored. */
export const TOKEN_PREFIX = 'hpt_';
const TOKEN_RE = /^hpt_[A-Za-z0-9_-]{43}$/;

export function createToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export function isWellFormedToken(s: string): boolean {
  return TOKEN_RE.test(s);
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
