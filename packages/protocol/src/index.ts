export * from './device-id.ts';
export * from './errors.ts';
export * from './x509.ts';
