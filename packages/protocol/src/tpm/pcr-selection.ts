// PCR selections (TPM 2.0 Library Part 2 §10.6.2 TPMS_PCR_SELECTION, §10.9.7 TPML_PCR_SELECTION)
// and the quote's PCR digest (Part 3 §18.4 TPM2_Quote: the digest of the selected PCR values,
// concatenated in the order of the selection, lowest index first).

import { createHash } from 'node:crypto';
import { HeptadError } from '../errors.ts';
import type { Reader, Writer } from './buffer.ts';
import { MAX_PCR_BANKS, PCR_SELECT_MAX, PCR_SELECT_MIN, TPM_ALG } from './constants.ts';

/** The PCR banks Heptad names; the numbers are TPM_ALG_ID values. */
export const PCR_BANKS = {
  sha1: TPM_ALG.SHA1,
  sha256: TPM_ALG.SHA256,
  sha384: TPM_ALG.SHA384,
  sha512: TPM_ALG.SHA512,
} as const;
export type PcrBank = keyof typeof PCR_BANKS;

/** What to select: one bank and PCR indexes (any order; duplicates collapse). */
export interface PcrSelection {
  readonly hash: PcrBank;
  readonly pcrs: readonly number[];
}

/** One TPMS_PCR_SELECTION as read from the wire. */
export interface DecodedPcrSelection {
  /** TPM_ALG_ID of the bank, as sent (may be a bank Heptad has no name for). */
  readonly hashAlg: number;
  /** The selected indexes, ascending. */
  readonly pcrs: readonly number[];
  /** sizeofSelect as sent (3 on PC-client TPMs). */
  readonly sizeofSelect: number;
}

/** The highest PCR index a selection can carry here (PCR_SELECT_MAX bytes). */
export const MAX_PCR_INDEX = PCR_SELECT_MAX * 8 - 1;

/** The indexes ascending and de-duplicated; an index that is not 0-31 is ROT_INPUT_INVALID. */
export function normalizePcrs(pcrs: readonly number[]): number[] {
  for (const p of pcrs) {
    if (!Number.isInteger(p) || p < 0 || p > MAX_PCR_INDEX) {
      throw new HeptadError(
        'ROT_INPUT_INVALID',
        `PCR index ${String(p)} is not an integer 0-${MAX_PCR_INDEX}`,
      );
    }
  }
  return [...new Set(pcrs)].sort((a, b) => a - b);
}

/**
 * The pcrSelect bitmap of TPMS_PCR_SELECTION (Part 2 §10.6.2): PCR n is bit (n mod 8) of byte
 * (n div 8); at least PCR_SELECT_MIN (3) bytes, as every PC-client TPM sends.
 */
export function pcrSelectionBitmap(pcrs: readonly number[]): Buffer {
  const sorted = normalizePcrs(pcrs);
  const highest = sorted.at(-1) ?? 0;
  const bitmap = Buffer.alloc(Math.max(PCR_SELECT_MIN, Math.floor(highest / 8) + 1));
  for (const p of sorted) bitmap[p >> 3] = (bitmap[p >> 3] ?? 0) | (1 << (p & 7));
  return bitmap;
}

/** The indexes set in a pcrSelect bitmap, ascending. */
export function pcrsOfBitmap(bitmap: Uint8Array): number[] {
  const pcrs: number[] = [];
  for (let byte = 0; byte < bitmap.length; byte++) {
    for (let bit = 0; bit < 8; bit++) if (((bitmap[byte] ?? 0) >> bit) & 1) pcrs.push(byte * 8 + bit);
  }
  return pcrs;
}

/** Appends a TPML_PCR_SELECTION (count, then one TPMS_PCR_SELECTION per bank). */
export function writePcrSelectionList(w: Writer, selections: readonly PcrSelection[]): void {
  w.u32(selections.length);
  for (const s of selections) {
    const bitmap = pcrSelectionBitmap(s.pcrs);
    w.u16(PCR_BANKS[s.hash]).u8(bitmap.length).bytes(bitmap);
  }
}

/** Reads a TPML_PCR_SELECTION with bounds on count and sizeofSelect. */
export function readPcrSelectionList(r: Reader, field: string): DecodedPcrSelection[] {
  const at = r.offset;
  const count = r.u32(`${field}.count`);
  if (count > MAX_PCR_BANKS) throw r.invalid(`${field}.count ${count} is larger than ${MAX_PCR_BANKS}`, at);
  const list: DecodedPcrSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = r.u16(`${field}[${i}].hash`);
    const sizeAt = r.offset;
    const sizeofSelect = r.u8(`${field}[${i}].sizeofSelect`);
    if (sizeofSelect > PCR_SELECT_MAX) {
      throw r.invalid(`${field}[${i}].sizeofSelect ${sizeofSelect} is larger than ${PCR_SELECT_MAX}`, sizeAt);
    }
    const bitmap = r.bytes(sizeofSelect, `${field}[${i}].pcrSelect`);
    list.push({ hashAlg, pcrs: pcrsOfBitmap(bitmap), sizeofSelect });
  }
  return list;
}

/**
 * The PCR digest a quote carries (Part 3 §18.4.1): SHA-256 over the selected PCR values
 * concatenated in ascending index order. `values` must already be in that order.
 */
export function pcrDigest(values: readonly Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const v of values) h.update(v);
  return h.digest();
}

/** The value a PCR of the sha256 bank holds after `extend(digest)`: SHA-256(old ‖ digest). */
export function extendPcrValue(old: Uint8Array, digest: Uint8Array): Buffer {
  if (old.length !== 32 || digest.length !== 32) {
    throw new HeptadError('ROT_INPUT_INVALID', 'a sha256 PCR value and an extended digest are 32 bytes');
  }
  return createHash('sha256').update(old).update(digest).digest();
}
