// TPMS_ATTEST of a quote (TPM 2.0 Library Part 2 §10.12.12 TPMS_ATTEST, §10.11.1
// TPMS_CLOCK_INFO, §10.12.4 TPMS_QUOTE_INFO), parsed for the verifier and encoded for the
// software root of trust, which emits byte-identical structures so one verifier serves both.

import { HeptadError } from '../errors.ts';
import { Reader, Writer } from './buffer.ts';
import {
  MAX_ATTEST_SIZE,
  MAX_DATA_SIZE,
  MAX_DIGEST_SIZE,
  MAX_NAME_SIZE,
  TPM_GENERATED_VALUE,
  TPM_ST,
} from './constants.ts';
import {
  type DecodedPcrSelection,
  type PcrSelection,
  readPcrSelectionList,
  writePcrSelectionList,
} from './pcr-selection.ts';

/** The fields of a TPMS_ATTEST whose type is TPM_ST_ATTEST_QUOTE. */
export interface QuoteAttest {
  /** Qualified name of the signing key (TPM2B_NAME). */
  readonly qualifiedSigner: Buffer;
  /** The caller's qualifyingData: the verifier's nonce (TPM2B_DATA). */
  readonly extraData: Buffer;
  /** TPMS_CLOCK_INFO.clock: milliseconds the TPM has been powered, never goes back. */
  readonly clock: bigint;
  /**
   * TPMS_CLOCK_INFO.resetCount / restartCount and firmwareVersion. A TPM obfuscates these three
   * for keys outside the endorsement and platform hierarchies (Part 3 §18.1): for such a key they
   * change across reboots but do not count up.
   */
  readonly resetCount: number;
  readonly restartCount: number;
  /** TPMS_CLOCK_INFO.safe: no clock value reported before may have been larger. */
  readonly safe: boolean;
  readonly firmwareVersion: bigint;
  /** TPMS_QUOTE_INFO.pcrSelect: one entry per bank. */
  readonly pcrSelect: readonly DecodedPcrSelection[];
  /** TPMS_QUOTE_INFO.pcrDigest: digest of the selected PCR values. */
  readonly pcrDigest: Buffer;
}

/** What the software root of trust puts into the TPMS_ATTEST it signs. */
export interface QuoteAttestInput {
  readonly qualifiedSigner: Uint8Array;
  readonly extraData: Uint8Array;
  readonly clock: bigint | number;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly safe: boolean;
  readonly firmwareVersion: bigint | number;
  readonly pcrSelection: PcrSelection;
  readonly pcrDigest: Uint8Array;
}

/** Marshals a quote's TPMS_ATTEST exactly as a TPM does (one PCR selection). */
export function encodeQuoteAttest(input: QuoteAttestInput): Buffer {
  const sizes: [string, Uint8Array, number][] = [
    ['qualifiedSigner', input.qualifiedSigner, MAX_NAME_SIZE],
    ['extraData', input.extraData, MAX_DATA_SIZE],
    ['pcrDigest', input.pcrDigest, MAX_DIGEST_SIZE],
  ];
  for (const [field, value, max] of sizes) {
    if (value.length > max) {
      throw new HeptadError('TPM_STRUCTURE_INVALID', `TPMS_ATTEST: ${field} is longer than ${max} bytes`);
    }
  }
  const w = new Writer()
    .u32(TPM_GENERATED_VALUE)
    .u16(TPM_ST.ATTEST_QUOTE)
    .tpm2b(input.qualifiedSigner)
    .tpm2b(input.extraData)
    .u64(input.clock)
    .u32(input.resetCount)
    .u32(input.restartCount)
    .u8(input.safe ? 1 : 0)
    .u64(input.firmwareVersion);
  writePcrSelectionList(w, [input.pcrSelection]);
  return w.tpm2b(input.pcrDigest).finish();
}

/**
 * Parses the TPMS_ATTEST of a quote. Wrong magic (not TPM-generated) or another attestation
 * type is TPM_QUOTE_INVALID; anything malformed, oversized or followed by trailing bytes is
 * TPM_STRUCTURE_INVALID.
 */
export function decodeQuoteAttest(attest: Uint8Array): QuoteAttest {
  if (attest.length > MAX_ATTEST_SIZE) {
    throw new HeptadError('TPM_STRUCTURE_INVALID', `TPMS_ATTEST is longer than ${MAX_ATTEST_SIZE} bytes`);
  }
  const r = new Reader(attest, 'TPMS_ATTEST');
  // Part 2 §10.12.12: magic is TPM_GENERATED_VALUE on everything the TPM itself produced; a
  // restricted key refuses to sign external data starting with it, so it marks a real quote.
  const magic = r.u32('magic');
  if (magic !== TPM_GENERATED_VALUE) {
    throw new HeptadError(
      'TPM_QUOTE_INVALID',
      `TPMS_ATTEST.magic is 0x${magic.toString(16)}, not TPM_GENERATED`,
    );
  }
  const type = r.u16('type');
  if (type !== TPM_ST.ATTEST_QUOTE) {
    throw new HeptadError(
      'TPM_QUOTE_INVALID',
      `TPMS_ATTEST.type is 0x${type.toString(16)}, not ATTEST_QUOTE`,
    );
  }
  const qualifiedSigner = r.tpm2b('qualifiedSigner', MAX_NAME_SIZE);
  const extraData = r.tpm2b('extraData', MAX_DATA_SIZE);
  const clock = r.u64('clockInfo.clock');
  const resetCount = r.u32('clockInfo.resetCount');
  const restartCount = r.u32('clockInfo.restartCount');
  const safeAt = r.offset;
  const safeByte = r.u8('clockInfo.safe');
  if (safeByte > 1) throw r.invalid(`clockInfo.safe is ${safeByte}, not YES (1) or NO (0)`, safeAt);
  const firmwareVersion = r.u64('firmwareVersion');
  const pcrSelect = readPcrSelectionList(r, 'attested.quote.pcrSelect');
  const pcrDigest = r.tpm2b('attested.quote.pcrDigest', MAX_DIGEST_SIZE);
  r.end();
  return {
    qualifiedSigner,
    extraData,
    clock,
    resetCount,
    restartCount,
    safe: safeByte === 1,
    firmwareVersion,
    pcrSelect,
    pcrDigest,
  };
}
