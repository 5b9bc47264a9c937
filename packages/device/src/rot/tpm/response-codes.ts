// TPM_RC response codes (TPM 2.0 Library Part 2 §6.6): decoding a response code into a name a
// person can look up, and which codes mean "try again".

/** TPM_RC_SUCCESS and the codes the client handles itself. */
export const TPM_RC = {
  SUCCESS: 0x000,
  /** TPM2_Startup when the TPM is already started (Part 3 §9.3). */
  INITIALIZE: 0x100,
  /** A transient handle that no longer exists (e.g. after a TPM reset). */
  HANDLE: 0x08b,
  REFERENCE_H0: 0x910,
  YIELDED: 0x908,
  TESTING: 0x90a,
  RETRY: 0x922,
} as const;

/** Warnings after which the same command may simply be sent again (Part 2 §6.6.3). */
export const RETRYABLE_RCS: ReadonlySet<number> = new Set([TPM_RC.RETRY, TPM_RC.YIELDED, TPM_RC.TESTING]);

/** Format-zero codes, RC_VER1 + n (Part 2 §6.6.3, table 16). */
const VER1: Readonly<Record<number, string>> = {
  0: 'INITIALIZE',
  1: 'FAILURE',
  3: 'SEQUENCE',
  11: 'PRIVATE',
  25: 'HMAC',
  32: 'DISABLED',
  33: 'EXCLUSIVE',
  36: 'AUTH_TYPE',
  37: 'AUTH_MISSING',
  38: 'POLICY',
  39: 'PCR',
  40: 'PCR_CHANGED',
  45: 'UPGRADE',
  46: 'TOO_MANY_CONTEXTS',
  47: 'AUTH_UNAVAILABLE',
  48: 'REBOOT',
  49: 'UNBALANCED',
  66: 'COMMAND_SIZE',
  67: 'COMMAND_CODE',
  68: 'AUTHSIZE',
  69: 'AUTH_CONTEXT',
  70: 'NV_RANGE',
  71: 'NV_SIZE',
  72: 'NV_LOCKED',
  73: 'NV_AUTHORIZATION',
  74: 'NV_UNINITIALIZED',
  75: 'NV_SPACE',
  76: 'NV_DEFINED',
  80: 'BAD_CONTEXT',
  81: 'CPHASH',
  82: 'PARENT',
  83: 'NEEDS_TEST',
  84: 'NO_RESULT',
  85: 'SENSITIVE',
};

/** Format-one codes, RC_FMT1 + n, which name a handle, session or parameter (table 16). */
const FMT1: Readonly<Record<number, string>> = {
  1: 'ASYMMETRIC',
  2: 'ATTRIBUTES',
  3: 'HASH',
  4: 'VALUE',
  5: 'HIERARCHY',
  7: 'KEY_SIZE',
  8: 'MGF',
  9: 'MODE',
  10: 'TYPE',
  11: 'HANDLE',
  12: 'KDF',
  13: 'RANGE',
  14: 'AUTH_FAIL',
  15: 'NONCE',
  16: 'PP',
  18: 'SCHEME',
  21: 'SIZE',
  22: 'SYMMETRIC',
  23: 'TAG',
  24: 'SELECTOR',
  26: 'INSUFFICIENT',
  27: 'SIGNATURE',
  28: 'KEY',
  29: 'POLICY_FAIL',
  31: 'INTEGRITY',
  32: 'TICKET',
  33: 'RESERVED_BITS',
  34: 'BAD_AUTH',
  35: 'EXPIRED',
  36: 'POLICY_CC',
  37: 'BINDING',
  38: 'CURVE',
  39: 'ECC_POINT',
};

/** Warnings, RC_WARN + n (table 16). */
const WARN: Readonly<Record<number, string>> = {
  1: 'CONTEXT_GAP',
  2: 'OBJECT_MEMORY',
  3: 'SESSION_MEMORY',
  4: 'MEMORY',
  5: 'SESSION_HANDLES',
  6: 'OBJECT_HANDLES',
  7: 'LOCALITY',
  8: 'YIELDED',
  9: 'CANCELED',
  10: 'TESTING',
  16: 'REFERENCE_H0',
  17: 'REFERENCE_H1',
  18: 'REFERENCE_H2',
  19: 'REFERENCE_H3',
  20: 'REFERENCE_H4',
  21: 'REFERENCE_H5',
  22: 'REFERENCE_H6',
  24: 'REFERENCE_S0',
  25: 'REFERENCE_S1',
  26: 'REFERENCE_S2',
  27: 'REFERENCE_S3',
  28: 'REFERENCE_S4',
  29: 'REFERENCE_S5',
  30: 'REFERENCE_S6',
  32: 'NV_RATE',
  33: 'LOCKOUT',
  34: 'RETRY',
  35: 'NV_UNAVAILABLE',
};

export interface DecodedResponseCode {
  /** The base code with the handle/session/parameter number removed (e.g. 0x08e for AUTH_FAIL). */
  readonly base: number;
  /** e.g. "TPM_RC_AUTH_FAIL (session 1)". */
  readonly name: string;
}

/**
 * Decodes a TPM_RC (Part 2 §6.6.2, figure 26). Bit 7 set: format one, the low 6 bits are the
 * error and bits 8-11 say which parameter (bit 6 set), session or handle it concerns. Otherwise
 * bit 8 marks a TPM 2.0 code, bit 11 a warning and bit 10 a vendor code; without bit 8 it is a
 * TPM 1.2 code.
 */
export function decodeResponseCode(rc: number): DecodedResponseCode {
  if (rc === 0) return { base: 0, name: 'TPM_RC_SUCCESS' };
  if (rc & 0x080) {
    const base = 0x080 | (rc & 0x03f);
    const n = (rc >> 8) & 0xf;
    const where = rc & 0x040 ? `parameter ${n}` : n & 0x8 ? `session ${n & 0x7}` : `handle ${n}`;
    return { base, name: `TPM_RC_${FMT1[rc & 0x03f] ?? 'UNKNOWN_FMT1'} (${where})` };
  }
  if (!(rc & 0x100)) return { base: rc, name: 'TPM 1.2 response code' };
  if (rc & 0x400) return { base: rc, name: 'vendor-defined response code' };
  const table = rc & 0x800 ? WARN : VER1;
  const name = table[rc & 0x07f];
  return { base: rc & 0xfff, name: name ? `TPM_RC_${name}` : 'unknown response code' };
}

export function formatResponseCode(rc: number): string {
  return `0x${rc.toString(16).padStart(8, '0')}`;
}
