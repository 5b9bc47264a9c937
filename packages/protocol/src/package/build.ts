/**
 * Building and signing image packages (§2–§5). Builders run on developer machines and in the
 * service, never in the bootloader; they refuse everything the verifier would refuse, with the
 * same codes, so a package that builds also verifies.
 */
import { createHash, type KeyObject, sign } from 'node:crypto';
import { HeptadError } from '../errors.ts';
import {
  FILE_MODES,
  HEADER_SIZE,
  type ImageManifest,
  limitsOf,
  MAX_SIGNATURES,
  PACKAGE_FORMAT_VERSION,
  PACKAGE_MAGIC,
  type PackageLimits,
} from './format.ts';
import { assertManifest, assertNoConflicts, assertPath, canonicalJson } from './manifest.ts';
import { keyIdOf, readContents, readLayout, signedMessage } from './verify.ts';

export interface PackageFileInput {
  readonly path: string;
  /** 0o644 (default) or 0o755. */
  readonly mode?: number;
  readonly content: Uint8Array;
}

export interface PackageSigner {
  readonly privateKey: KeyObject;
}

export interface BuildPackageOptions {
  /** The manifest without payloadSha256 and payloadSize, which are computed here. */
  readonly manifest: Omit<ImageManifest, 'payloadSha256' | 'payloadSize'>;
  readonly files: readonly PackageFileInput[];
  readonly signers: readonly PackageSigner[];
  readonly limits?: Partial<PackageLimits>;
}

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** A private ECDSA P-256 key and its key id. */
function signerOf(privateKey: KeyObject): { keyId: string; privateKey: KeyObject } {
  if (privateKey.type !== 'private')
    throw new HeptadError('IMAGE_KEY_UNSUPPORTED', 'a signer needs a private key');
  return { keyId: keyIdOf(privateKey), privateKey };
}

function signatureEntry(keyId: string, privateKey: KeyObject, message: Buffer): Buffer {
  const signature = sign('sha256', message, { key: privateKey, dsaEncoding: 'der' });
  const head = Buffer.alloc(34);
  head.write(keyId, 0, 'hex');
  head.writeUInt16BE(signature.length, 32);
  return Buffer.concat([head, signature]);
}

/** Serializes the files in path order (§4) and refuses what the verifier would refuse. */
function payloadOf(files: readonly PackageFileInput[], limits: PackageLimits): Buffer {
  if (files.length > limits.maxFiles) throw new HeptadError('IMAGE_LIMIT_EXCEEDED', `${files.length} files`);
  for (const f of files) assertPath(f.path);
  assertNoConflicts(files.map((f) => f.path));
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : 1));
  const parts: Buffer[] = [Buffer.alloc(4)];
  (parts[0] as Buffer).writeUInt32BE(sorted.length);
  let size = 4;
  for (const f of sorted) {
    const mode = f.mode ?? 0o644;
    if (!FILE_MODES.includes(mode)) {
      throw new HeptadError('IMAGE_PAYLOAD_MALFORMED', `file ${f.path} has mode ${mode.toString(8)}`);
    }
    const head = Buffer.alloc(2 + f.path.length + 2 + 8 + 32);
    head.writeUInt16BE(f.path.length, 0);
    head.write(f.path, 2, 'latin1');
    const o = 2 + f.path.length;
    head.writeUInt16BE(mode, o);
    head.writeBigUInt64BE(BigInt(f.content.length), o + 2);
    sha256(f.content).copy(head, o + 10);
    size += head.length + f.content.length;
    // Stop before concatenating anything that cannot fit in a package.
    if (size > limits.maxPackageSize)
      throw new HeptadError('IMAGE_TOO_LARGE', 'the files exceed the package size limit');
    parts.push(head, Buffer.from(f.content.buffer, f.content.byteOffset, f.content.byteLength));
  }
  return Buffer.concat(parts, size);
}

/** Builds and signs a package; throws HeptadError IMAGE_* with the verifier's codes. */
export function buildPackage(options: BuildPackageOptions): Buffer {
  const limits = limitsOf(options.limits);
  if (options.signers.length === 0) throw new HeptadError('IMAGE_SIGNATURE_MISSING', 'no signer given');
  if (options.signers.length > MAX_SIGNATURES) {
    throw new HeptadError('IMAGE_LIMIT_EXCEEDED', `${options.signers.length} signers`);
  }
  const signers = options.signers.map((s) => signerOf(s.privateKey));
  if (new Set(signers.map((s) => s.keyId)).size !== signers.length) {
    throw new HeptadError('IMAGE_SIGNATURE_DUPLICATE', 'a key is given twice');
  }
  const payload = payloadOf(options.files, limits);
  const manifest = {
    ...options.manifest,
    payloadSha256: sha256(payload).toString('hex'),
    payloadSize: payload.length,
  };
  assertManifest(manifest, limits);
  if (!options.files.some((f) => f.path === manifest.entryPoint)) {
    throw new HeptadError('IMAGE_MANIFEST_INVALID', 'the entry point is not a payload file', {
      fields: [{ field: '/entryPoint', problem: 'is not a file of the payload' }],
    });
  }
  const manifestBytes = Buffer.from(canonicalJson(manifest), 'utf8');
  if (manifestBytes.length > limits.maxManifestSize) {
    throw new HeptadError('IMAGE_LIMIT_EXCEEDED', `the manifest is ${manifestBytes.length} bytes`);
  }
  const header = Buffer.alloc(HEADER_SIZE);
  PACKAGE_MAGIC.copy(header, 0);
  header.writeUInt16BE(PACKAGE_FORMAT_VERSION, 4);
  header.writeUInt16BE(0, 6);
  header.writeUInt32BE(manifestBytes.length, 8);
  header.writeBigUInt64BE(BigInt(payload.length), 12);
  const signed = Buffer.concat([header, manifestBytes, payload]);
  const message = signedMessage(sha256(signed));
  const entries = signers.map((s) => signatureEntry(s.keyId, s.privateKey, message));
  const pkg = Buffer.concat([signed, Buffer.from([entries.length]), ...entries]);
  if (pkg.length > limits.maxPackageSize)
    throw new HeptadError('IMAGE_TOO_LARGE', `the package is ${pkg.length} bytes`);
  return pkg;
}

/**
 * Appends one signature over the same signed region (the service re-signing with the tenant's
 * production key, the operator signing a runtime). The package's structure, manifest and file
 * digests are checked first, so nothing malformed gets signed; its existing signatures are NOT
 * verified — verify the package with verifyPackage before vouching for it.
 */
export function addSignature(
  pkg: Uint8Array,
  privateKey: KeyObject,
  limits?: Partial<PackageLimits>,
): Buffer {
  const l = limitsOf(limits);
  const buf = Buffer.from(pkg.buffer, pkg.byteOffset, pkg.byteLength);
  const layout = readLayout(buf, l);
  const { keyId } = signerOf(privateKey);
  if (layout.signatures.some((s) => s.keyId === keyId)) {
    throw new HeptadError('IMAGE_SIGNATURE_DUPLICATE', `key ${keyId} already signed`);
  }
  if (layout.signatures.length >= MAX_SIGNATURES) {
    throw new HeptadError('IMAGE_LIMIT_EXCEEDED', `already ${MAX_SIGNATURES} signatures`);
  }
  readContents(buf, layout, l);
  const signed = buf.subarray(0, layout.signedEnd);
  const entry = signatureEntry(keyId, privateKey, signedMessage(sha256(signed)));
  const out = Buffer.concat([buf, entry]);
  out[layout.signedEnd] = layout.signatures.length + 1;
  if (out.length > l.maxPackageSize)
    throw new HeptadError('IMAGE_TOO_LARGE', `the package is ${out.length} bytes`);
  return out;
}
