// The TPM 2.0 backend of the device root of trust: transports, the command client, swtpm's
// control channel and TpmRootOfTrust.

export {
  DEFAULT_RETRIES,
  DEFAULT_RETRY_DELAY_MS,
  type HashResult,
  isTpmCommandFailure,
  type LoadedObject,
  MAX_DIGEST_BUFFER,
  TPM_CC,
  TPM_RH,
  TPM_SU,
  TpmClient,
  type TpmClientOptions,
  type TpmCommandName,
} from './client.ts';
export { type DecodedResponseCode, decodeResponseCode, RETRYABLE_RCS, TPM_RC } from './response-codes.ts';
export { openTpmRootOfTrust, openTpmTransport, parseTpmRotSpec, type TpmRotSpec } from './spec.ts';
export {
  SWTPM_CTRL_CMD,
  SWTPM_INIT_DELETE_VOLATILE,
  type SwtpmControlAddress,
  swtpmControl,
  swtpmPowerCycle,
} from './swtpm-control.ts';
export {
  IDENTITY_KEY_ATTRIBUTES,
  IDENTITY_KEY_LABEL,
  IDENTITY_KEY_TEMPLATE,
  STORAGE_KEY_TEMPLATE,
} from './templates.ts';
export {
  createTpmRootOfTrust,
  MAX_QUALIFYING_DATA,
  TpmRootOfTrust,
  type TpmRootOfTrustOptions,
} from './tpm-root-of-trust.ts';
export {
  DEFAULT_COMMAND_TIMEOUT_MS,
  DeviceTransport,
  SerialQueue,
  SocketTransport,
  type TpmTransport,
  type TransportOptions,
} from './transport.ts';
// RootOfTrust and QuoteResult (./types.ts) are not re-exported: ../root-of-trust.ts has the same
// interface under the same names, and the package exports that one.
