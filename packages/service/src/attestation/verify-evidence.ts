import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import {
  type AttestationEvidence,
  attestationBinding,
  type ErrorCode,
  HeptadError,
  isHeptadError,
  replayMeasurements,
  verifyCsr,
  verifyQuote,
} from '@heptad/protocol';

/** Parsed identity keys by PEM: parsing costs as much as a signature check, and devices come back daily. */
const KEY_CACHE_MAX = 10_000;
const keyCache = new Map<string, KeyObject>();
function identityKey(pem: string): KeyObject {
  let key = keyCache.get(pem);
  if (!key) {
    try {
      key = createPublicKey(pem);
    } catch (cause) {
      throw new HeptadError('INTERNAL_ERROR', 'registered key unreadable', { cause });
    }
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value as string);
    keyCache.set(pem, key);
  }
  return key;
}

/** The device as attestation sees it (from the registry). */
export interface AttestingDevice {
  readonly id: string;
  readonly publicKeyPem: string;
  readonly measurementPcr: number;
}

export interface VerifiedEvidence {
  /** the TLS client key the certificate is for */
  readonly csrSpkiDer: Buffer;
  readonly runtimeDigests: readonly string[];
}

const mapQuoteError = (code: string): ErrorCode => {
  switch (code) {
    case 'TPM_QUOTE_SIGNATURE_INVALID':
      return 'ATTEST_QUOTE_SIGNATURE_INVALID';
    case 'TPM_QUOTE_NONCE_MISMATCH':
      return 'ATTEST_QUOTE_NONCE_MISMATCH';
    case 'TPM_QUOTE_PCR_SELECTION_MISMATCH':
      return 'ATTEST_QUOTE_PCR_SELECTION_MISMATCH';
    case 'TPM_QUOTE_PCR_DIGEST_MISMATCH':
      return 'ATTEST_LOG_MISMATCH';
    default:
      return 'ATTEST_EVIDENCE_MALFORMED';
  }
};

function decodeBase64(s: string, field: string): Buffer {
  // Strict: only canonical base64 round-trips; anything else is malformed evidence.
  const b = Buffer.from(s, 'base64');
  if (b.length === 0 || b.toString('base64').replace(/=+$/, '') !== s.replace(/=+$/, '')) {
    throw new HeptadError('ATTEST_EVIDENCE_MALFORMED', `${field} is not base64`);
  }
  return b;
}

/**
 * Checks the cryptographic part of attestation evidence, in the order the threat model asks:
 * the quote is signed by the registered identity key; it covers this nonce bound to this CSR;
 * the measurement log replays to the quoted register; the CSR is well formed and self-signed.
 * (Device registry, claim, quarantine and nonce checks come before this; the runtime-image
 * policy after.) Pure: bytes and keys in, a value out or a coded error.
 */
export function verifyEvidence(
  device: AttestingDevice,
  evidence: AttestationEvidence,
  nonce: Buffer,
): VerifiedEvidence {
  const attest = decodeBase64(evidence.quote.attest, 'quote.attest');
  const signature = decodeBase64(evidence.quote.signature, 'quote.signature');
  const csrDer = decodeBase64(evidence.csr, 'csr');
  const identity = identityKey(device.publicKeyPem);
  const digests = evidence.log.map((e) => Buffer.from(e.digest, 'hex'));
  try {
    verifyQuote({
      attest,
      signature,
      publicKey: identity,
      expectedExtraData: attestationBinding(nonce, csrDer),
      expectedPcrs: [device.measurementPcr],
      pcrValues: new Map([[device.measurementPcr, replayMeasurements(digests)]]),
    });
  } catch (e) {
    if (isHeptadError(e)) throw new HeptadError(mapQuoteError(e.code), e.message, { cause: e });
    throw e;
  }
  let spkiDer: Buffer;
  try {
    const csr = verifyCsr(csrDer);
    if (csr.subjectCommonName !== undefined && csr.subjectCommonName !== device.id) {
      throw new HeptadError('ATTEST_CSR_SUBJECT_MISMATCH');
    }
    spkiDer = csr.spkiDer;
  } catch (e) {
    if (isHeptadError(e) && e.code === 'ATTEST_CSR_SUBJECT_MISMATCH') throw e;
    throw new HeptadError('ATTEST_CSR_INVALID', isHeptadError(e) ? e.message : undefined, { cause: e });
  }
  return {
    csrSpkiDer: spkiDer,
    runtimeDigests: evidence.log.filter((e) => e.kind === 'runtime').map((e) => e.digest),
  };
}

/** Digest of the evidence as received, kept with a refusal so it can be matched later. */
export function evidenceDigest(evidence: unknown): string {
  return createHash('sha256').update(JSON.stringify(evidence)).digest('hex');
}
