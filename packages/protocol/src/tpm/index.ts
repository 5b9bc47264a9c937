// TPM 2.0 structures, pure (no I/O): the service uses them to verify evidence, the device to
// build commands, the software root of trust to emit the same bytes a TPM would. References are
// to the TPM 2.0 Library specification (TCG), revision 1.59: Part 1 Architecture, Part 2
// Structures, Part 3 Commands.

/** TPMS_ATTEST of a quote, decode and encode (Part 2 §10.12.12, §10.11.1, §10.12.4). */
export { decodeQuoteAttest, encodeQuoteAttest, type QuoteAttest, type QuoteAttestInput } from './attest.ts';
/** Big-endian Writer and bounds-checked Reader (TPM marshalling: integers big-endian, TPM2B = UINT16 size + bytes). */
export { Reader, structureInvalid, Writer } from './buffer.ts';
/** TPM_ALG_ID, TPM_ST, TPMA_OBJECT, TPM_GENERATED_VALUE and size limits (Part 2 §6, §8.3). */
export {
  DIGEST_SIZE,
  MAX_ATTEST_SIZE,
  MAX_DATA_SIZE,
  MAX_DIGEST_SIZE,
  MAX_ECC_PARAMETER_SIZE,
  MAX_NAME_SIZE,
  MAX_PCR_BANKS,
  MAX_PUBLIC_SIZE,
  MAX_SIGNATURE_SIZE,
  PCR_COUNT,
  PCR_SELECT_MAX,
  PCR_SELECT_MIN,
  TPM_ALG,
  TPM_ECC_CURVE,
  TPM_GENERATED_VALUE,
  TPM_ST,
  TPMA_OBJECT,
} from './constants.ts';
/**
 * TPMS_PCR_SELECTION / TPML_PCR_SELECTION (Part 2 §10.6.2, §10.9.7), the quote's PCR digest
 * (Part 3 §18.4: SHA-256 over the selected values in ascending index order) and the extend rule
 * (Part 1, PCR extend: new = H(old ‖ digest)).
 */
export {
  type DecodedPcrSelection,
  extendPcrValue,
  MAX_PCR_INDEX,
  normalizePcrs,
  PCR_BANKS,
  type PcrBank,
  type PcrSelection,
  pcrDigest,
  pcrSelectionBitmap,
  pcrsOfBitmap,
  readPcrSelectionList,
  writePcrSelectionList,
} from './pcr-selection.ts';
/**
 * ECC TPMT_PUBLIC / TPM2B_PUBLIC (Part 2 §12.2.4, §12.2.5) to a node:crypto KeyObject (via
 * JWK), and the object name nameAlg ‖ H(TPMT_PUBLIC) (Part 1 §16).
 */
export {
  type DecodedEccPublic,
  decodeEccPublic,
  decodeTpm2bPublic,
  type EccPublicArea,
  eccPointToKey,
  encodeEccPublic,
  encodeTpm2bPublic,
  fixedSize,
  keyToEccPoint,
  readEccPublic,
  type SchemeDefinition,
  type SymmetricDefinition,
  tpmName,
} from './public.ts';

/** TPMT_SIGNATURE with TPMS_SIGNATURE_ECC (Part 2 §11.3.4, §11.3.2); P1363 and DER forms. */
export {
  decodeSignature,
  derToP1363,
  type EccSignature,
  encodeEcdsaSignature,
  toDerSignature,
  toP1363,
} from './signature.ts';

/** The quote verifier (Part 3 §18.4 TPM2_Quote), one HeptadError code per reason. */
export { type VerifiedQuote, type VerifyQuoteOptions, verifyQuote } from './verify-quote.ts';
