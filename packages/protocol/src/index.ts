export * from './atomic-file.ts';
export * from './attestation.ts';
export * from './device-id.ts';
export * from './errors.ts';
export * from './package/index.ts';
export * from './pki/index.ts';
export * from './tpm/index.ts';
export * from './x509.ts';
