import { createPublicKey } from 'node:crypto';
import { decodeTpm2bPublic, HeptadError, TPMA_OBJECT } from '@heptad/protocol';

const REQUIRED =
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin |
  TPMA_OBJECT.restricted |
  TPMA_OBJECT.sign;

/**
 * A TPM device registers the TPM2B_PUBLIC of its identity key beside the SPKI. It must describe
 * the same key, and a key the TPM generated and can neither export nor use for anything but
 * signing TPM-made structures (fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign) —
 * the attributes of an attestation key (TPM 2.0 Library Part 1, §27.2; Part 2, §8.3).
 */
export function assertTpmPublicMatches(tpmPublicB64: string, spkiPem: string): void {
  let parsed: ReturnType<typeof decodeTpm2bPublic>;
  try {
    parsed = decodeTpm2bPublic(Buffer.from(tpmPublicB64, 'base64'));
  } catch (cause) {
    throw new HeptadError('DEVICE_PUBLIC_KEY_INVALID', 'tpmPublic is not a TPM2B_PUBLIC', { cause });
  }
  const a = parsed.publicKey.export({ format: 'der', type: 'spki' });
  const b = createPublicKey(spkiPem).export({ format: 'der', type: 'spki' });
  if (!a.equals(b)) throw new HeptadError('DEVICE_PUBLIC_KEY_INVALID', 'tpmPublic describes another key');
  if (
    (parsed.area.objectAttributes & REQUIRED) !== REQUIRED ||
    parsed.area.objectAttributes & TPMA_OBJECT.decrypt
  ) {
    throw new HeptadError(
      'DEVICE_PUBLIC_KEY_INVALID',
      'the TPM identity key must be a restricted signing key fixed to its TPM',
    );
  }
}
