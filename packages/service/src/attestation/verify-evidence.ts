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

export interface QuotedEvidence {
  /** the CSR the quote vouches for (not yet checked itself) */
  readonly csrDer: Buffer;
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
 * The quote and the log: the quote is signed by the registered identity key (checked before the
 * quote is parsed); it covers this nonce bound to this CSR (and to the device report, when the
 * evidence carries one); it covers exactly the device's
 * measurement register; the log replays to the quoted value. Pure: bytes and keys in, the CSR
 * bytes and the measured runtimes out, or a coded error. (Registry, claim, quarantine and nonce
 * checks come before; runtime policy, then the CSR itself, after.)
 */
export function verifyQuoteAndLog(
  device: AttestingDevice,
  evidence: AttestationEvidence,
  nonce: Buffer,
): QuotedEvidence {
  const attest = decodeBase64(evidence.quote.attest, 'quote.attest');
  const signature = decodeBase64(evidence.quote.signature, 'quote.signature');
  const csrDer = decodeBase64(evidence.csr, 'csr');
  const digests = evidence.log.map((e) => Buffer.from(e.digest, 'hex'));
  try {
    verifyQuote({
      attest,
      signature,
      publicKey: identityKey(device.publicKeyPem),
      // The device report is bound too: one changed, added or removed in transit fails here.
      expectedExtraData: attestationBinding(nonce, csrDer, evidence.report),
      expectedPcrs: [device.measurementPcr],
      pcrValues: new Map([[device.measurementPcr, replayMeasurements(digests)]]),
    });
  } catch (e) {
    if (isHeptadError(e)) throw new HeptadError(mapQuoteError(e.code), e.message, { cause: e });
    throw e;
  }
  return { csrDer, runtimeDigests: evidence.log.filter((e) => e.kind === 'runtime').map((e) => e.digest) };
}

/** The CSR: well formed, self-signed (proof of possession of the TLS key), for this device. */
export function verifyDeviceCsr(deviceId: string, csrDer: Buffer): Buffer {
  try {
    const csr = verifyCsr(csrDer);
    if (csr.subjectCommonName !== undefined && csr.subjectCommonName !== deviceId) {
      throw new HeptadError('ATTEST_CSR_SUBJECT_MISMATCH');
    }
    return csr.spkiDer;
  } catch (e) {
    if (isHeptadError(e) && e.code === 'ATTEST_CSR_SUBJECT_MISMATCH') throw e;
    throw new HeptadError('ATTEST_CSR_INVALID', isHeptadError(e) ? e.message : undefined, { cause: e });
  }
}

/** Digest of the evidence as received, kept with a refusal so it can be matched later. */
export function evidenceDigest(evidence: unknown): string {
  return createHash('sha256').update(JSON.stringify(evidence)).digest('hex');
}
