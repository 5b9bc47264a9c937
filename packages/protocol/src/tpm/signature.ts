// TPMT_SIGNATURE for ECDSA (TPM 2.0 Library Part 2 §11.3.4 TPMT_SIGNATURE, §11.3.2
// TPMS_SIGNATURE_ECC) and conversions between the TPM's (r, s), IEEE P1363 (r ‖ s, what
// node:crypto verifies with dsaEncoding 'ieee-p1363') and DER (X9.62 ECDSA-Sig-Value).

import { HeptadError } from '../errors.ts';
import { Reader, structureInvalid, Writer } from './buffer.ts';
import { MAX_ECC_PARAMETER_SIZE, MAX_SIGNATURE_SIZE, TPM_ALG } from './constants.ts';
import { fixedSize } from './public.ts';

/** The signature algorithms whose TPMU_SIGNATURE member is TPMS_SIGNATURE_ECC (r, s). */
const ECC_SIGNATURE_ALGS: ReadonlySet<number> = new Set([TPM_ALG.ECDSA, TPM_ALG.ECDAA, 0x001b, 0x001c]);

/** An ECC TPMT_SIGNATURE: sigAlg, hash, r and s as the TPM sent them. */
export interface EccSignature {
  readonly sigAlg: number;
  readonly hashAlg: number;
  readonly r: Buffer;
  readonly s: Buffer;
}

/**
 * Parses a TPMT_SIGNATURE. Malformed bytes are TPM_STRUCTURE_INVALID; a signature of a non-ECC
 * scheme (RSA, HMAC, NULL) is TPM_QUOTE_SIGNATURE_INVALID, since Heptad keys only make ECDSA.
 */
export function decodeSignature(signature: Uint8Array): EccSignature {
  if (signature.length > MAX_SIGNATURE_SIZE) {
    throw new HeptadError(
      'TPM_STRUCTURE_INVALID',
      `TPMT_SIGNATURE is longer than ${MAX_SIGNATURE_SIZE} bytes`,
    );
  }
  const r = new Reader(signature, 'TPMT_SIGNATURE');
  const sigAlg = r.u16('sigAlg');
  if (!ECC_SIGNATURE_ALGS.has(sigAlg)) {
    throw new HeptadError(
      'TPM_QUOTE_SIGNATURE_INVALID',
      `TPMT_SIGNATURE.sigAlg is 0x${sigAlg.toString(16).padStart(4, '0')}, not an ECC signature`,
    );
  }
  const hashAlg = r.u16('signature.hash');
  const sigR = r.tpm2b('signature.signatureR', MAX_ECC_PARAMETER_SIZE);
  const sigS = r.tpm2b('signature.signatureS', MAX_ECC_PARAMETER_SIZE);
  r.end();
  return { sigAlg, hashAlg, r: sigR, s: sigS };
}

/**
 * Marshals an ECDSA-SHA256 TPMT_SIGNATURE from a node:crypto P-256 signature, with r and s
 * left-padded to 32 bytes as a TPM sends them. `encoding` says which form `sig` is in; without
 * it, a 64-byte value that is not a strict DER ECDSA-Sig-Value is taken as IEEE P1363 (r ‖ s),
 * anything else must be DER.
 */
export function encodeEcdsaSignature(sig: Uint8Array, encoding?: 'der' | 'ieee-p1363'): Buffer {
  const form = encoding ?? (sig.length === 64 && !isStrictDerSignature(sig) ? 'ieee-p1363' : 'der');
  const rs = form === 'der' ? derToP1363(sig) : Buffer.from(sig);
  if (rs.length !== 64) {
    throw structureInvalid('ECDSA signature', 'an IEEE P1363 P-256 signature is 64 bytes (r ‖ s)');
  }
  return new Writer()
    .u16(TPM_ALG.ECDSA)
    .u16(TPM_ALG.SHA256)
    .tpm2b(rs.subarray(0, 32))
    .tpm2b(rs.subarray(32))
    .finish();
}

/** r ‖ s, each left-padded to 32 bytes; undefined when r or s does not fit P-256. */
export function toP1363(sig: Pick<EccSignature, 'r' | 's'>): Buffer | undefined {
  const r = fixedSize(sig.r);
  const s = fixedSize(sig.s);
  return r && s ? Buffer.concat([r, s]) : undefined;
}

/** A DER ECDSA-Sig-Value (SEQUENCE { r INTEGER, s INTEGER }) from r and s. */
export function toDerSignature(sig: Pick<EccSignature, 'r' | 's'>): Buffer {
  const r = derInteger(sig.r);
  const s = derInteger(sig.s);
  return Buffer.concat([Buffer.of(0x30, r.length + s.length), r, s]);
}

function derInteger(v: Uint8Array): Buffer {
  let start = 0;
  while (start < v.length - 1 && v[start] === 0) start++;
  let body = Buffer.from(v.subarray(start));
  if (body.length === 0) body = Buffer.of(0);
  if ((body[0] ?? 0) & 0x80) body = Buffer.concat([Buffer.of(0), body]);
  return Buffer.concat([Buffer.of(0x02, body.length), body]);
}

/** IEEE P1363 r ‖ s (64 bytes) from a strict DER P-256 ECDSA-Sig-Value. */
export function derToP1363(der: Uint8Array): Buffer {
  const parsed = parseDerSignature(der);
  if (typeof parsed === 'string') throw structureInvalid('ECDSA-Sig-Value', parsed);
  return parsed;
}

function isStrictDerSignature(der: Uint8Array): boolean {
  return typeof parseDerSignature(der) !== 'string';
}

/** r ‖ s, or the reason the bytes are not a strict (minimal, no trailing bytes) DER signature. */
function parseDerSignature(der: Uint8Array): Buffer | string {
  if (der[0] !== 0x30) return 'not a SEQUENCE';
  const len = der[1] ?? 0;
  if (len >= 0x80 || len !== der.length - 2) return 'SEQUENCE length does not match';
  let at = 2;
  const out: Buffer[] = [];
  for (const name of ['r', 's']) {
    if (der[at] !== 0x02) return `${name} is not an INTEGER`;
    const n = der[at + 1] ?? 0;
    const body = der.subarray(at + 2, at + 2 + n);
    if (n === 0 || n >= 0x80 || body.length !== n) return `${name} has a bad length`;
    if ((body[0] ?? 0) & 0x80) return `${name} is negative`;
    if (n > 1 && body[0] === 0 && !((body[1] ?? 0) & 0x80)) return `${name} is not minimally encoded`;
    const fixed = fixedSize(body);
    if (!fixed) return `${name} is longer than 32 bytes`;
    out.push(fixed);
    at += 2 + n;
  }
  if (at !== der.length) return 'trailing bytes';
  return Buffer.concat(out);
}
