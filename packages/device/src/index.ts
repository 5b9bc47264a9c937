// @heptad/device: the device side. Root of trust (TPM 2.0 or soft), device state, manufacture,
// the attestation agent.

export {
  type AttestationOutcome,
  AttestationScheduler,
  attestOnce,
  nextAttestationDelay,
  retryDelay,
} from './agent/attest.ts';
export { DeviceServiceClient, ServiceRefusal } from './agent/service-client.ts';
export { type ManufactureOptions, type ManufactureResult, manufacture } from './manufacture.ts';
export { openRootOfTrust } from './rot/open.ts';
export type { QuoteResult, RootOfTrust, RootOfTrustKind } from './rot/root-of-trust.ts';
export { SoftRootOfTrust } from './rot/soft/soft-root-of-trust.ts';
export { formatRotSpec, parseRotSpec, type RotSpec } from './rot/spec.ts';
export * from './rot/tpm/index.ts';

export {
  type AttestationRecord,
  type DeviceConfig,
  DeviceState,
  type RegistrationRecord,
} from './state/device-state.ts';
