// Numeric constants of the TPM 2.0 Library specification, Part 2 (Structures), revision 1.59.
// Only the values Heptad uses are listed; each group cites its table.

/** TPM_ALG_ID (Part 2 §6.3, table 9). */
export const TPM_ALG = {
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  KEYEDHASH: 0x0008,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  RSASSA: 0x0014,
  ECDSA: 0x0018,
  ECDAA: 0x001a,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CFB: 0x0043,
} as const;

/** TPM_ECC_CURVE (Part 2 §6.4, table 10). */
export const TPM_ECC_CURVE = { NIST_P256: 0x0003 } as const;

/** TPM_ST structure tags (Part 2 §6.9, table 19). */
export const TPM_ST = {
  NO_SESSIONS: 0x8001,
  SESSIONS: 0x8002,
  ATTEST_QUOTE: 0x8018,
  HASHCHECK: 0x8024,
  CREATION: 0x8021,
} as const;

/** TPM_GENERATED_VALUE (Part 2 §6.2): 0xff 'TCG', the first four bytes of every TPMS_ATTEST. */
export const TPM_GENERATED_VALUE = 0xff544347;

/** TPMA_OBJECT bits (Part 2 §8.3, table 31). */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
} as const;

/** Digest size in bytes of the hash algorithms a PCR bank or a name may use. */
export const DIGEST_SIZE: Readonly<Record<number, number>> = {
  [TPM_ALG.SHA1]: 20,
  [TPM_ALG.SHA256]: 32,
  [TPM_ALG.SHA384]: 48,
  [TPM_ALG.SHA512]: 64,
};

/** PCR_SELECT_MIN (Part 2 §10.6.1): a selection bitmap is at least 3 bytes (24 PCRs). */
export const PCR_SELECT_MIN = 3;
/** The largest sizeofSelect accepted when parsing (32 PCRs); real TPMs use 3. */
export const PCR_SELECT_MAX = 4;
/** The PCRs of a PC-client TPM: 0-23. */
export const PCR_COUNT = 24;
/** The largest TPML_PCR_SELECTION count accepted (one selection per bank; HASH_COUNT is small). */
export const MAX_PCR_BANKS = 16;

/** Sane maxima for size fields, from Part 2 (buffer sizes of a TPM with SHA-512 and P-521). */
export const MAX_DIGEST_SIZE = 64; // TPM2B_DIGEST: sizeof(TPMU_HA)
export const MAX_DATA_SIZE = 66; // TPM2B_DATA: sizeof(TPMT_HA)
export const MAX_NAME_SIZE = 68; // TPM2B_NAME: sizeof(TPMU_NAME), TPMT_HA with room for a larger hash
export const MAX_ECC_PARAMETER_SIZE = 66; // TPM2B_ECC_PARAMETER: MAX_ECC_KEY_BYTES for P-521
export const MAX_PUBLIC_SIZE = 1024; // TPM2B_PUBLIC: sizeof(TPMT_PUBLIC) is well below this
export const MAX_ATTEST_SIZE = 1024; // TPM2B_ATTEST: sizeof(TPMS_ATTEST) is well below this
export const MAX_SIGNATURE_SIZE = 1024; // TPMT_SIGNATURE: an RSA-4096 signature is 518 bytes
