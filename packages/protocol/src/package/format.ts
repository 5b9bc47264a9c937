/**
 * Constants and types of the Heptad image package format, version 1. The byte layout, every
 * limit and every refusal are specified in docs/formats/image-package.md; section numbers (§)
 * below refer to it.
 */

/** §2: the 4 bytes every package starts with. */
export const PACKAGE_MAGIC = Buffer.from('HPKG', 'latin1');
/** §2: the only format version this code reads and writes. */
export const PACKAGE_FORMAT_VERSION = 1;
/** §2: magic(4) version(2) flags(2) manifest length(4) payload length(8). */
export const HEADER_SIZE = 20;
/**
 * §5: what a signature signs is this context string followed by the 32-byte SHA-256 of the
 * signed region. The context separates package signatures from anything else the same key may
 * sign; signing a fixed-size message lets the verifier hash the (large) region once, however
 * many signatures there are.
 */
export const SIGNATURE_CONTEXT = Buffer.from('HPKG-SIG-V1\0', 'latin1');

/** §5: 1 to 8 signatures; an ECDSA P-256 DER signature is 8 to 72 bytes. */
export const MAX_SIGNATURES = 8;
export const MIN_SIGNATURE_LENGTH = 8;
export const MAX_SIGNATURE_LENGTH = 72;
/** §4.1: fixed path rules (part of the format, not configurable). */
export const MAX_PATH_BYTES = 255;
export const MAX_PATH_COMPONENT_BYTES = 100;
/** §4: the only file modes (no setuid, no world-writable, no device files). */
export const FILE_MODES: readonly number[] = [0o644, 0o755];
/** §3: nesting of the app manifest, so a hostile manifest cannot exhaust the stack. */
export const MAX_JSON_DEPTH = 32;

/** §6: configurable limits, with safe defaults. */
export const DEFAULT_MAX_PACKAGE_SIZE = 64 * 1024 * 1024;
export const DEFAULT_MAX_MANIFEST_SIZE = 64 * 1024;
export const DEFAULT_MAX_FILES = 1024;
export const DEFAULT_MAX_APP_MANIFEST_SIZE = 32 * 1024;

export interface PackageLimits {
  /** Whole package, signatures included. */
  readonly maxPackageSize: number;
  /** Manifest bytes (canonical JSON). */
  readonly maxManifestSize: number;
  readonly maxFiles: number;
  /** The app manifest's canonical JSON bytes. */
  readonly maxAppManifestSize: number;
}

export const DEFAULT_PACKAGE_LIMITS: PackageLimits = Object.freeze({
  maxPackageSize: DEFAULT_MAX_PACKAGE_SIZE,
  maxManifestSize: DEFAULT_MAX_MANIFEST_SIZE,
  maxFiles: DEFAULT_MAX_FILES,
  maxAppManifestSize: DEFAULT_MAX_APP_MANIFEST_SIZE,
});

export function limitsOf(limits: Partial<PackageLimits> | undefined): PackageLimits {
  return { ...DEFAULT_PACKAGE_LIMITS, ...limits };
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export type ImageType = 'application' | 'runtime';

/** §3: the manifest, exactly these fields. */
export interface ImageManifest {
  /** UUID, stable across all versions of the component. */
  readonly componentId: string;
  /** UUID, unique per build. */
  readonly imageId: string;
  readonly name: string;
  /** Semantic Versioning 2.0.0. */
  readonly version: string;
  /** 0..2^31-1; devices refuse to go below the highest one they installed. */
  readonly securityVersion: number;
  readonly type: ImageType;
  /** Path of a payload file. */
  readonly entryPoint: string;
  /** Present iff type is 'application'; opaque here (defined by the app manifest format). */
  readonly appManifest?: JsonObject;
  /** Lowercase hex SHA-256 of the payload section. */
  readonly payloadSha256: string;
  /** Bytes of the payload section. */
  readonly payloadSize: number;
  /** ISO-8601 UTC, exactly as Date.prototype.toISOString writes it. */
  readonly createdAt: string;
}

export interface PackageFile {
  readonly path: string;
  /** 0o644 or 0o755. */
  readonly mode: number;
  readonly content: Buffer;
}
