// The fixed key templates (TPMT_PUBLIC, TPM 2.0 Library Part 2 §12.2.4) Heptad creates keys from.

import { type EccPublicArea, TPM_ALG, TPM_ECC_CURVE, TPMA_OBJECT } from '@heptad/protocol';

/**
 * Goes into unique.x of the identity key template. A primary key is derived from the hierarchy
 * seed and the whole template (Part 1, "Primary Objects"), so this label makes the identity key
 * Heptad's own: no other software that creates an ECC primary from a common template (such as
 * the TCG EK or SRK templates) gets the same key, and Heptad gets the same key every time.
 */
export const IDENTITY_KEY_LABEL = Buffer.from('heptad device identity v1', 'ascii');

/**
 * fixedTPM | fixedParent | sensitiveDataOrigin: made inside this TPM and never leaves it.
 * userWithAuth: used with its (empty) password. restricted | sign: signs only what the TPM
 * produced itself (quotes) or what it hashed and ticketed (TPM2_Hash), never a digest that could
 * pass for a quote. noDA: its authValue is empty, so dictionary-attack protection protects
 * nothing, and without noDA every power cut while the key was in use would count as a failed
 * try (Part 1, "Dictionary Attack Protection") until the TPM locks the key out.
 */
export const IDENTITY_KEY_ATTRIBUTES =
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin |
  TPMA_OBJECT.userWithAuth |
  TPMA_OBJECT.noDA |
  TPMA_OBJECT.restricted |
  TPMA_OBJECT.sign;

/** The identity key: ECC NIST P-256, ECDSA with SHA-256, restricted signing, under the owner hierarchy. */
export const IDENTITY_KEY_TEMPLATE: EccPublicArea = Object.freeze({
  nameAlg: TPM_ALG.SHA256,
  objectAttributes: IDENTITY_KEY_ATTRIBUTES,
  authPolicy: Buffer.alloc(0),
  symmetric: null,
  scheme: { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 },
  curveId: TPM_ECC_CURVE.NIST_P256,
  kdf: null,
  x: IDENTITY_KEY_LABEL,
  y: Buffer.alloc(0),
});

/** An ECC P-256 storage parent (restricted decrypt, AES-128-CFB), as in the TCG SRK template. */
export const STORAGE_KEY_TEMPLATE: EccPublicArea = Object.freeze({
  nameAlg: TPM_ALG.SHA256,
  objectAttributes:
    TPMA_OBJECT.fixedTPM |
    TPMA_OBJECT.fixedParent |
    TPMA_OBJECT.sensitiveDataOrigin |
    TPMA_OBJECT.userWithAuth |
    TPMA_OBJECT.noDA |
    TPMA_OBJECT.restricted |
    TPMA_OBJECT.decrypt,
  authPolicy: Buffer.alloc(0),
  symmetric: { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB },
  scheme: null,
  curveId: TPM_ECC_CURVE.NIST_P256,
  kdf: null,
  x: Buffer.alloc(0),
  y: Buffer.alloc(0),
});
