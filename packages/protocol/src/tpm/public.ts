// TPMT_PUBLIC / TPM2B_PUBLIC for ECC keys (TPM 2.0 Library Part 2 §12.2.4 TPMT_PUBLIC,
// §12.2.3.6 TPMS_ECC_PARMS, §11.2.5.2 TPMS_ECC_POINT) and the object's name (Part 1 §16
// "Names": nameAlg ‖ H_nameAlg(TPMT_PUBLIC)).
//
// Only ECC NIST P-256 keys with a SHA-256 name are turned into keys: that is the one kind of
// identity key a Heptad root of trust creates. Anything else is TPM_KEY_UNSUPPORTED, so a
// registered key can never be an RSA key, another curve or a key named by a weaker hash.

import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { HeptadError } from '../errors.ts';
import { Reader, Writer } from './buffer.ts';
import {
  MAX_DIGEST_SIZE,
  MAX_ECC_PARAMETER_SIZE,
  MAX_PUBLIC_SIZE,
  TPM_ALG,
  TPM_ECC_CURVE,
} from './constants.ts';

/** TPMT_SYM_DEF_OBJECT (Part 2 §11.1.7); `null` is TPM_ALG_NULL. */
export interface SymmetricDefinition {
  readonly algorithm: number;
  readonly keyBits: number;
  readonly mode: number;
}

/** TPMT_ECC_SCHEME / TPMT_KDF_SCHEME (Part 2 §11.2.5.6, §11.2.3.3); `null` is TPM_ALG_NULL. */
export interface SchemeDefinition {
  readonly scheme: number;
  readonly hashAlg: number;
  /** Only for ECDAA (TPMS_SCHEME_ECDAA.count). */
  readonly count?: number;
}

/** The fields of an ECC TPMT_PUBLIC. */
export interface EccPublicArea {
  readonly nameAlg: number;
  readonly objectAttributes: number;
  readonly authPolicy: Buffer;
  readonly symmetric: SymmetricDefinition | null;
  readonly scheme: SchemeDefinition | null;
  readonly curveId: number;
  readonly kdf: SchemeDefinition | null;
  /** unique.ecc.x: in a CreatePrimary template this is entropy input (Heptad puts a label here). */
  readonly x: Buffer;
  readonly y: Buffer;
}

export interface DecodedEccPublic {
  readonly area: EccPublicArea;
  /** The marshalled TPMT_PUBLIC (what the name hashes). */
  readonly publicArea: Buffer;
  /** TPM name: nameAlg (2 bytes) ‖ SHA-256(TPMT_PUBLIC). */
  readonly name: Buffer;
  readonly publicKey: KeyObject;
}

/** P-256 coordinates and scalars are 32 bytes. */
const P256_SIZE = 32;

/** Marshals an ECC TPMT_PUBLIC (type TPM_ALG_ECC). */
export function encodeEccPublic(area: EccPublicArea): Buffer {
  const w = new Writer();
  w.u16(TPM_ALG.ECC).u16(area.nameAlg).u32(area.objectAttributes).tpm2b(area.authPolicy);
  if (area.symmetric === null) w.u16(TPM_ALG.NULL);
  else w.u16(area.symmetric.algorithm).u16(area.symmetric.keyBits).u16(area.symmetric.mode);
  writeScheme(w, area.scheme);
  w.u16(area.curveId);
  writeScheme(w, area.kdf);
  w.tpm2b(area.x).tpm2b(area.y);
  return w.finish();
}

/** Marshals a TPM2B_PUBLIC: the TPMT_PUBLIC with its UINT16 size in front. */
export function encodeTpm2bPublic(area: EccPublicArea): Buffer {
  return new Writer().tpm2b(encodeEccPublic(area)).finish();
}

function writeScheme(w: Writer, s: SchemeDefinition | null): void {
  if (s === null) {
    w.u16(TPM_ALG.NULL);
    return;
  }
  w.u16(s.scheme).u16(s.hashAlg);
  if (s.scheme === TPM_ALG.ECDAA) w.u16(s.count ?? 0);
}

/** Reads an ECC TPMT_PUBLIC from `r` (the caller checks for trailing bytes). */
export function readEccPublic(r: Reader): EccPublicArea {
  const typeAt = r.offset;
  const type = r.u16('type');
  if (type !== TPM_ALG.ECC) {
    throw new HeptadError('TPM_KEY_UNSUPPORTED', `TPMT_PUBLIC.type is 0x${hex4(type)}, not TPM_ALG_ECC`, {
      detail: { offset: typeAt },
    });
  }
  const nameAlg = r.u16('nameAlg');
  const objectAttributes = r.u32('objectAttributes');
  const authPolicy = r.tpm2b('authPolicy', MAX_DIGEST_SIZE);
  const symAlg = r.u16('parameters.symmetric.algorithm');
  const symmetric =
    symAlg === TPM_ALG.NULL
      ? null
      : {
          algorithm: symAlg,
          keyBits: r.u16('parameters.symmetric.keyBits'),
          mode: r.u16('parameters.symmetric.mode'),
        };
  const scheme = readScheme(r, 'parameters.scheme');
  const curveId = r.u16('parameters.curveID');
  const kdf = readScheme(r, 'parameters.kdf');
  const x = r.tpm2b('unique.x', MAX_ECC_PARAMETER_SIZE);
  const y = r.tpm2b('unique.y', MAX_ECC_PARAMETER_SIZE);
  return { nameAlg, objectAttributes, authPolicy, symmetric, scheme, curveId, kdf, x, y };
}

function readScheme(r: Reader, field: string): SchemeDefinition | null {
  const scheme = r.u16(`${field}.scheme`);
  if (scheme === TPM_ALG.NULL) return null;
  const hashAlg = r.u16(`${field}.hashAlg`);
  if (scheme === TPM_ALG.ECDAA) return { scheme, hashAlg, count: r.u16(`${field}.count`) };
  return { scheme, hashAlg };
}

/**
 * Parses a TPM2B_PUBLIC of an ECC P-256 key (Part 2 §12.2.5) into its fields, its name and a
 * node:crypto public key. Malformed bytes are TPM_STRUCTURE_INVALID; a well-formed key of
 * another kind is TPM_KEY_UNSUPPORTED.
 */
export function decodeTpm2bPublic(tpm2bPublic: Uint8Array): DecodedEccPublic {
  const outer = new Reader(tpm2bPublic, 'TPM2B_PUBLIC');
  const publicArea = outer.tpm2b('size', MAX_PUBLIC_SIZE);
  outer.end();
  return decodeEccPublic(publicArea);
}

/** Parses a TPMT_PUBLIC (no size prefix); see decodeTpm2bPublic. */
export function decodeEccPublic(publicArea: Uint8Array): DecodedEccPublic {
  const r = new Reader(publicArea, 'TPMT_PUBLIC');
  const area = readEccPublic(r);
  r.end();
  if (area.nameAlg !== TPM_ALG.SHA256) {
    throw new HeptadError('TPM_KEY_UNSUPPORTED', `nameAlg is 0x${hex4(area.nameAlg)}, not TPM_ALG_SHA256`);
  }
  if (area.curveId !== TPM_ECC_CURVE.NIST_P256) {
    throw new HeptadError('TPM_KEY_UNSUPPORTED', `curveID is 0x${hex4(area.curveId)}, not NIST P-256`);
  }
  const bytes = Buffer.from(publicArea);
  return { area, publicArea: bytes, name: tpmName(bytes), publicKey: eccPointToKey(area.x, area.y) };
}

/** The TPM name of an object with a SHA-256 nameAlg: 0x000b ‖ SHA-256(TPMT_PUBLIC). */
export function tpmName(publicArea: Uint8Array): Buffer {
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(TPM_ALG.SHA256);
  return Buffer.concat([alg, createHash('sha256').update(publicArea).digest()]);
}

/** A node:crypto P-256 public key from TPMS_ECC_POINT coordinates (via JWK). */
export function eccPointToKey(x: Uint8Array, y: Uint8Array): KeyObject {
  const px = fixedSize(x);
  const py = fixedSize(y);
  if (px === undefined || py === undefined) {
    throw new HeptadError(
      'TPM_KEY_UNSUPPORTED',
      'unique.x and unique.y must be P-256 coordinates (32 bytes)',
    );
  }
  try {
    return createPublicKey({
      key: { kty: 'EC', crv: 'P-256', x: px.toString('base64url'), y: py.toString('base64url') },
      format: 'jwk',
    });
  } catch (cause) {
    throw new HeptadError('TPM_KEY_UNSUPPORTED', 'unique is not a point on P-256', { cause });
  }
}

/** The TPMS_ECC_POINT (x, y) of a node:crypto P-256 public key, 32 bytes each. */
export function keyToEccPoint(key: KeyObject): { x: Buffer; y: Buffer } {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new HeptadError('TPM_KEY_UNSUPPORTED', 'the key is not an ECDSA P-256 key');
  }
  const jwk = key.export({ format: 'jwk' });
  return { x: Buffer.from(jwk.x ?? '', 'base64url'), y: Buffer.from(jwk.y ?? '', 'base64url') };
}

/**
 * `b` as exactly 32 bytes: left-padded with zeros when shorter (a TPM may drop leading zeros),
 * undefined when longer than 32 bytes once leading zeros are dropped.
 */
export function fixedSize(b: Uint8Array, size = P256_SIZE): Buffer | undefined {
  let start = 0;
  while (b.length - start > size && b[start] === 0) start++;
  const trimmed = b.subarray(start);
  if (trimmed.length > size) return undefined;
  const out = Buffer.alloc(size);
  out.set(trimmed, size - trimmed.length);
  return out;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}
