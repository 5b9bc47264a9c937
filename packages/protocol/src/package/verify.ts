/**
 * Verification of an image package (§7). This is the code the device bootloader runs at every
 * boot, so it is short, uses only node:crypto, and follows one order: read the fixed header,
 * find the signature block from the header's lengths (without walking the payload), hash the
 * signed region once, check the signatures, and only then parse the manifest and the payload.
 * Nothing the signature does not cover is parsed beyond the lengths needed to find it.
 */
import { createHash, createPublicKey, type KeyObject, verify } from 'node:crypto';
import { type ErrorCode, HeptadError } from '../errors.ts';
import {
  FILE_MODES,
  HEADER_SIZE,
  type ImageManifest,
  limitsOf,
  MAX_SIGNATURE_LENGTH,
  MAX_SIGNATURES,
  MIN_SIGNATURE_LENGTH,
  PACKAGE_FORMAT_VERSION,
  PACKAGE_MAGIC,
  type PackageFile,
  type PackageLimits,
  SIGNATURE_CONTEXT,
} from './format.ts';
import { assertManifest, assertNoConflicts, assertPath, canonicalJson } from './manifest.ts';

/** Trusted keys by key id (lowercase hex), or a lookup function. */
export type TrustedKeys = ReadonlyMap<string, KeyObject> | ((keyId: string) => KeyObject | undefined);

export interface VerifyOptions {
  readonly limits?: Partial<PackageLimits>;
  /** When true, every signature must be by a trusted key (default: at least one). */
  readonly requireAllTrusted?: boolean;
}

export interface VerifiedPackage {
  readonly manifest: ImageManifest;
  /** In path order; contents are views into the verified buffer, not copies. */
  readonly files: PackageFile[];
  /** Key ids whose signatures verified. */
  readonly signedBy: string[];
  /** Lowercase hex SHA-256 of the signed region: the identity of the package. */
  readonly digest: string;
}

/** Where the parts of a package are (§2, §5); only lengths have been read. */
export interface PackageLayout {
  readonly manifestEnd: number;
  /** End of the payload = start of the signature block = length of the signed region. */
  readonly signedEnd: number;
  readonly signatures: ReadonlyArray<{ readonly keyId: string; readonly signature: Buffer }>;
}

const fail = (code: ErrorCode, message: string) => new HeptadError(code, message);

/**
 * Key id of an ECDSA P-256 key: lowercase hex SHA-256 of its DER SubjectPublicKeyInfo. Accepts a
 * public or a private key. Other key types are refused: one algorithm means no algorithm
 * confusion and a fixed signature size.
 */
export function keyIdOf(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (
    pub.type !== 'public' ||
    pub.asymmetricKeyType !== 'ec' ||
    pub.asymmetricKeyDetails?.namedCurve !== 'prime256v1'
  ) {
    throw fail('IMAGE_KEY_UNSUPPORTED', 'the key is not an ECDSA P-256 key');
  }
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/**
 * §2, §5: reads the header and the signature block. Every length is compared with what is
 * left before it is used, so a huge length (up to 2^64-1) is refused without allocating or
 * reading past the end.
 */
export function readLayout(pkg: Uint8Array, limits: PackageLimits): PackageLayout {
  // The size limit first: the cheapest check bounds all work that follows.
  if (pkg.length > limits.maxPackageSize) throw fail('IMAGE_TOO_LARGE', `the package is ${pkg.length} bytes`);
  const buf = Buffer.from(pkg.buffer, pkg.byteOffset, pkg.byteLength);
  // A prefix of the magic is a cut-short package; anything else is not a package at all.
  const seen = buf.subarray(0, PACKAGE_MAGIC.length);
  if (!PACKAGE_MAGIC.subarray(0, seen.length).equals(seen))
    throw fail('IMAGE_MAGIC_INVALID', 'no HPKG magic');
  if (buf.length < HEADER_SIZE) throw fail('IMAGE_TRUNCATED', 'the header is cut short');
  // A version or flag this code does not know may change what the bytes mean: refuse, never guess.
  if (buf.readUInt16BE(4) !== PACKAGE_FORMAT_VERSION || buf.readUInt16BE(6) !== 0) {
    throw fail('IMAGE_VERSION_UNSUPPORTED', 'format version or flags not supported');
  }
  const manifestLength = buf.readUInt32BE(8);
  if (manifestLength > limits.maxManifestSize) {
    throw fail('IMAGE_LIMIT_EXCEEDED', `the manifest is ${manifestLength} bytes`);
  }
  const payloadLength = buf.readBigUInt64BE(12);
  const manifestEnd = HEADER_SIZE + manifestLength;
  // BigInt: a u64 near 2^64 loses precision as a number; compared exactly it is just "too long".
  if (BigInt(manifestEnd) + payloadLength > BigInt(buf.length)) {
    throw fail('IMAGE_TRUNCATED', 'the package ends inside its manifest or payload');
  }
  const signedEnd = manifestEnd + Number(payloadLength);
  let o = signedEnd;
  if (o + 1 > buf.length) throw fail('IMAGE_TRUNCATED', 'the signature block is missing');
  const count = buf[o++] as number;
  if (count === 0) throw fail('IMAGE_SIGNATURE_MISSING', 'the package carries no signature');
  if (count > MAX_SIGNATURES) throw fail('IMAGE_LIMIT_EXCEEDED', `${count} signatures`);
  const signatures: Array<{ keyId: string; signature: Buffer }> = [];
  for (let i = 0; i < count; i++) {
    if (o + 34 > buf.length) throw fail('IMAGE_TRUNCATED', `signature ${i} is cut short`);
    const keyId = buf.toString('hex', o, o + 32);
    const length = buf.readUInt16BE(o + 32);
    o += 34;
    if (length < MIN_SIGNATURE_LENGTH || length > MAX_SIGNATURE_LENGTH) {
      throw fail('IMAGE_SIGNATURE_MALFORMED', `signature ${i} is ${length} bytes`);
    }
    if (o + length > buf.length) throw fail('IMAGE_TRUNCATED', `signature ${i} is cut short`);
    // One signature per key: a signer counted twice would defeat any count of distinct signers.
    if (signatures.some((s) => s.keyId === keyId))
      throw fail('IMAGE_SIGNATURE_DUPLICATE', `key ${keyId} signed twice`);
    signatures.push({ keyId, signature: buf.subarray(o, o + length) });
    o += length;
  }
  // Appended bytes would give one signed package many file hashes and hide data in it.
  if (o !== buf.length)
    throw fail('IMAGE_TRAILING_BYTES', `${buf.length - o} bytes after the last signature`);
  return { manifestEnd, signedEnd, signatures };
}

/** §5: the message a signature signs: context ‖ SHA-256(signed region). */
export function signedMessage(digest: Buffer): Buffer {
  return Buffer.concat([SIGNATURE_CONTEXT, digest]);
}

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** Lowercase hex SHA-256 of the signed region (the package's identity), after a layout check. */
export function packageDigest(pkg: Uint8Array, limits?: Partial<PackageLimits>): string {
  const { signedEnd } = readLayout(pkg, limitsOf(limits));
  return sha256(pkg.subarray(0, signedEnd)).toString('hex');
}

/**
 * Verifies a package against trusted keys and returns its manifest and files. Throws
 * HeptadError IMAGE_* for every refusal (see docs/formats/image-package.md §8).
 */
export function verifyPackage(
  pkg: Uint8Array,
  trusted: TrustedKeys,
  options: VerifyOptions = {},
): VerifiedPackage {
  const limits = limitsOf(options.limits);
  const layout = readLayout(pkg, limits);
  const buf = Buffer.from(pkg.buffer, pkg.byteOffset, pkg.byteLength);
  const digest = sha256(buf.subarray(0, layout.signedEnd));
  const message = signedMessage(digest);
  const lookup = typeof trusted === 'function' ? trusted : (id: string) => trusted.get(id);
  const signedBy: string[] = [];
  for (const { keyId, signature } of layout.signatures) {
    const key = lookup(keyId);
    if (key === undefined) {
      if (options.requireAllTrusted === true)
        throw fail('IMAGE_SIGNATURE_UNTRUSTED', `key ${keyId} is not trusted`);
      // Signatures by keys this verifier does not know are carried, not checked: a package signed
      // by a developer key and the tenant key installs on devices that trust either.
      continue;
    }
    // A trust map that lists a key under another id would let a signature "by" one key be checked
    // with another: refuse the misconfiguration rather than trust it.
    if (keyIdOf(key) !== keyId)
      throw fail('IMAGE_KEY_UNSUPPORTED', `trusted key ${keyId} has another key id`);
    let ok = false;
    try {
      ok = verify('sha256', message, { key, dsaEncoding: 'der' }, signature);
    } catch {
      ok = false; // a signature OpenSSL cannot even decode is just as invalid
    }
    // A bad signature by a trusted key is never skipped: it means tampering or a mixed-up key.
    if (!ok) throw fail('IMAGE_SIGNATURE_INVALID', `the signature by ${keyId} does not verify`);
    signedBy.push(keyId);
  }
  if (signedBy.length === 0) throw fail('IMAGE_SIGNATURE_UNTRUSTED', 'no signature is by a trusted key');
  // From here on, every byte read is covered by a verified signature.
  const { manifest, files } = readContents(buf, layout, limits);
  return { manifest, files, signedBy, digest: digest.toString('hex') };
}

/**
 * The manifest only, WITHOUT checking any signature: for display tools. Never base a decision
 * on its result.
 */
export function readManifestUnverified(pkg: Uint8Array, limits?: Partial<PackageLimits>): ImageManifest {
  const l = limitsOf(limits);
  const buf = Buffer.from(pkg.buffer, pkg.byteOffset, pkg.byteLength);
  return readManifest(buf, readLayout(buf, l), l);
}

function readManifest(buf: Buffer, layout: PackageLayout, limits: PackageLimits): ImageManifest {
  const bytes = buf.subarray(HEADER_SIZE, layout.manifestEnd);
  let value: unknown;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    value = JSON.parse(text);
  } catch (cause) {
    throw new HeptadError('IMAGE_MANIFEST_NOT_CANONICAL', 'the manifest is not UTF-8 JSON', { cause });
  }
  // One manifest, one encoding (§3.1): anything but the canonical bytes is refused.
  if (canonicalJson(value) !== text) {
    throw fail('IMAGE_MANIFEST_NOT_CANONICAL', 'the manifest is not in canonical form');
  }
  assertManifest(value, limits);
  return value;
}

/** §3, §4: the manifest and the payload, with every file digest and the payload digest checked. */
export function readContents(
  buf: Buffer,
  layout: PackageLayout,
  limits: PackageLimits,
): { manifest: ImageManifest; files: PackageFile[] } {
  const manifest = readManifest(buf, layout, limits);
  const payload = buf.subarray(layout.manifestEnd, layout.signedEnd);
  if (manifest.payloadSize !== payload.length) throw fail('IMAGE_PAYLOAD_MISMATCH', 'payloadSize differs');
  if (sha256(payload).toString('hex') !== manifest.payloadSha256) {
    throw fail('IMAGE_PAYLOAD_MISMATCH', 'payloadSha256 differs');
  }
  const malformed = (m: string) => fail('IMAGE_PAYLOAD_MALFORMED', m);
  let o = 0;
  const need = (n: number | bigint) => {
    if (BigInt(o) + BigInt(n) > BigInt(payload.length)) throw malformed('a file entry runs past the payload');
  };
  need(4);
  const count = payload.readUInt32BE(0);
  o = 4;
  if (count > limits.maxFiles) throw fail('IMAGE_LIMIT_EXCEEDED', `${count} files`);
  const files: PackageFile[] = [];
  for (let i = 0; i < count; i++) {
    need(2);
    const pathLength = payload.readUInt16BE(o);
    need(2 + pathLength + 2 + 8 + 32);
    // latin1: any non-ASCII byte becomes a character the path rules refuse.
    const path = payload.toString('latin1', o + 2, o + 2 + pathLength);
    o += 2 + pathLength;
    assertPath(path);
    const mode = payload.readUInt16BE(o);
    if (!FILE_MODES.includes(mode)) throw malformed(`file ${path} has mode ${mode.toString(8)}`);
    const size = payload.readBigUInt64BE(o + 2);
    const fileDigest = payload.subarray(o + 10, o + 42);
    o += 42;
    need(size);
    const content = payload.subarray(o, o + Number(size));
    o += content.length;
    if (!sha256(content).equals(fileDigest)) {
      throw fail('IMAGE_FILE_DIGEST_MISMATCH', `file ${path} does not match its SHA-256`);
    }
    files.push({ path, mode, content });
  }
  if (o !== payload.length) throw fail('IMAGE_TRAILING_BYTES', 'bytes after the last file of the payload');
  assertNoConflicts(files.map((f) => f.path));
  // One order (byte order of the paths) so that a file set has one encoding.
  for (let i = 1; i < files.length; i++) {
    if (!((files[i - 1] as PackageFile).path < (files[i] as PackageFile).path)) {
      throw malformed('files are not in path order');
    }
  }
  if (!files.some((f) => f.path === manifest.entryPoint)) {
    throw new HeptadError('IMAGE_MANIFEST_INVALID', 'the entry point is not a payload file', {
      fields: [{ field: '/entryPoint', problem: 'is not a file of the payload' }],
    });
  }
  return { manifest, files };
}
