// @heptad/device: the device side. Root of trust (TPM 2.0 or soft), device state, manufacture,
// the attestation agent.

export {
  type AttestationOutcome,
  AttestationScheduler,
  attestOnce,
  nextAttestationDelay,
  retryDelay,
} from './agent/attest.ts';
export { type ClientCertificate, DeviceServiceClient, ServiceRefusal } from './agent/service-client.ts';
export * from './apps/index.ts';
export { type BootOptions, type BootResult, boot } from './boot/bootloader.ts';
export {
  type BootInfo,
  EXIT,
  INCOMING_RUNTIME_PATH,
  LAST_CHECK_PATH,
  LAST_UPLOAD_PATH,
  type RuntimeMessage,
  UPDATE_NOW_PATH,
  UPLOAD_NOW_PATH,
} from './boot/contract.ts';
export { acknowledgeEvents, appendEvents, readEvents } from './boot/events.ts';
export { commitTrial, installRuntime, rollbackTrial } from './boot/install.ts';
export { measure, powerOn, reconcile } from './boot/measure.ts';
export { loadPlatformKeys, parseRuntimeSigners, RUNTIME_SIGNERS_PATH } from './boot/platform-keys.ts';
export {
  checkStatePermissions,
  DEFAULT_SETTINGS,
  DEFAULT_WATCHDOG_MS,
  isAlive,
  type RunOptions,
  runDevice,
} from './boot/run.ts';
export { type BootState, loadBootState, parseBootState, slotPath } from './boot/slots.ts';
export { type RunStatus, readRunStatus } from './boot/status.ts';
export * from './broker/index.ts';
export { type ManufactureOptions, type ManufactureResult, manufacture } from './manufacture.ts';
export * from './reports/index.ts';
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
export { FaultyStorage, FsStorage, type Storage } from './state/storage.ts';
export * from './supervisor/index.ts';
