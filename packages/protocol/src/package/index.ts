export type { BuildPackageOptions, PackageFileInput, PackageSigner } from './build.ts';
export { addSignature, buildPackage } from './build.ts';
export * from './format.ts';
export { canonicalJson } from './manifest.ts';
export type { TrustedKeys, VerifiedPackage, VerifyOptions } from './verify.ts';
export { keyIdOf, packageDigest, readManifestUnverified, verifyPackage } from './verify.ts';
