// The image package format (docs/formats/image-package.md): round trips, signatures (untrusted,
// invalid, swapped, moved between packages, duplicated), the header and the signature block
// under truncation, byte flips and huge lengths, canonical manifests, every manifest field, the
// path rules and every limit just at and just over it. Packages with a bad signed part are put
// together here by an independent writer of the format and properly signed, so the checks that
// run after signature verification are reached.

import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { describe, test } from 'node:test';
import { HeptadError } from '../src/errors.ts';
import {
  addSignature,
  type BuildPackageOptions,
  buildPackage,
  DEFAULT_MAX_FILES,
  type ImageManifest,
  keyIdOf,
  MAX_SIGNATURES,
  packageDigest,
  readManifestUnverified,
  verifyPackage,
} from '../src/package/index.ts';

const newKey = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });
const k1 = newKey();
const k2 = newKey();
const k3 = newKey();
const id1 = keyIdOf(k1.publicKey);
const id2 = keyIdOf(k2.publicKey);
const id3 = keyIdOf(k3.publicKey);
const trust = (...keys: KeyObject[]) => new Map(keys.map((k) => [keyIdOf(k), k]));
const T1 = trust(k1.publicKey);
const T12 = trust(k1.publicKey, k2.publicKey);

function assertCode(fn: () => unknown, code: string, label?: string): void {
  assert.throws(
    fn,
    (e: unknown) => {
      assert.ok(e instanceof HeptadError, `${label ?? code}: not a HeptadError: ${String(e)}`);
      assert.equal(e.code, code, label);
      return true;
    },
    label,
  );
}

type BaseManifest = BuildPackageOptions['manifest'];
const runtimeManifest: BaseManifest = {
  componentId: '3f2b8c1e-9a4d-4e6b-8f00-1c2d3e4f5a6b',
  imageId: 'a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d',
  name: 'heptad-runtime',
  version: '1.2.3',
  securityVersion: 4,
  type: 'runtime',
  entryPoint: 'bin/run',
  createdAt: '2026-01-01T00:00:00.000Z',
};
const appManifest: BaseManifest = {
  ...runtimeManifest,
  name: 'thermostat',
  type: 'application',
  appManifest: { capabilities: { gpio: [4, 5] }, schemaVersion: 1 },
};
const smallFiles = [
  { path: 'bin/run', mode: 0o755, content: Buffer.from('#!/bin/sh\necho hi\n') },
  { path: 'etc/config.json', content: Buffer.from('{"a":1}') },
];

function build(overrides: Partial<BuildPackageOptions> = {}): Buffer {
  return buildPackage({
    manifest: runtimeManifest,
    files: smallFiles,
    signers: [{ privateKey: k1.privateKey }],
    ...overrides,
  });
}

// An independent writer of the format (§2-§5), so tests can make packages the builder refuses.
const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
};
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();

interface RawFile {
  path: string | Buffer;
  mode?: number;
  content: Buffer;
  digest?: Buffer;
  size?: bigint;
}
function rawPayload(files: RawFile[], count = files.length, extra = Buffer.alloc(0)): Buffer {
  const parts: Buffer[] = [u32(count)];
  for (const f of files) {
    const path = typeof f.path === 'string' ? Buffer.from(f.path) : f.path;
    parts.push(u16(path.length), path, u16(f.mode ?? 0o644), u64(f.size ?? BigInt(f.content.length)));
    parts.push(f.digest ?? sha(f.content), f.content);
  }
  return Buffer.concat([...parts, extra]);
}
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}
function sigEntry(key: KeyObject, signed: Buffer, keyId = keyIdOf(key)): Buffer {
  const s = sign('sha256', Buffer.concat([Buffer.from('HPKG-SIG-V1\0', 'latin1'), sha(signed)]), {
    key,
    dsaEncoding: 'der',
  });
  return Buffer.concat([Buffer.from(keyId, 'hex'), u16(s.length), s]);
}
interface RawOptions {
  manifest?: Record<string, unknown> | string | Buffer;
  payload?: Buffer;
  keys?: KeyObject[];
  payloadLength?: bigint;
}
/** A signed package from raw parts; the manifest gets the payload's real digest and size unless given. */
function raw(o: RawOptions = {}): Buffer {
  const payload = o.payload ?? rawPayload(smallFiles);
  const m = o.manifest ?? {};
  const manifestBytes = Buffer.isBuffer(m)
    ? m
    : Buffer.from(
        typeof m === 'string'
          ? m
          : canonical({
              ...runtimeManifest,
              payloadSha256: sha(payload).toString('hex'),
              payloadSize: payload.length,
              ...m,
            }),
      );
  const header = Buffer.concat([
    Buffer.from('HPKG'),
    u16(1),
    u16(0),
    u32(manifestBytes.length),
    u64(o.payloadLength ?? BigInt(payload.length)),
  ]);
  const signed = Buffer.concat([header, manifestBytes, payload]);
  const keys = o.keys ?? [k1.privateKey];
  return Buffer.concat([signed, Buffer.from([keys.length]), ...keys.map((k) => sigEntry(k, signed))]);
}
/** Offset of the signature block of a package. */
const sigBlockOf = (pkg: Buffer) => 20 + pkg.readUInt32BE(8) + Number(pkg.readBigUInt64BE(12));

describe('image package round trip', () => {
  test('a built package verifies and returns its manifest, files, signer and digest', () => {
    const pkg = build();
    const v = verifyPackage(pkg, T1);
    assert.equal(v.manifest.name, 'heptad-runtime');
    assert.equal(
      v.manifest.payloadSize,
      pkg.length - 20 - pkg.readUInt32BE(8) - (pkg.length - sigBlockOf(pkg)),
    );
    assert.deepEqual(
      v.files.map((f) => [f.path, f.mode, f.content.toString()]),
      [
        ['bin/run', 0o755, '#!/bin/sh\necho hi\n'],
        ['etc/config.json', 0o644, '{"a":1}'],
      ],
    );
    assert.deepEqual(v.signedBy, [id1]);
    assert.equal(v.digest, packageDigest(pkg));
    assert.equal(v.digest, sha(pkg.subarray(0, sigBlockOf(pkg))).toString('hex'));
    assert.deepEqual(readManifestUnverified(pkg), v.manifest);
  });

  test('the independent writer and the builder agree byte for byte on the signed region', () => {
    const built = build();
    const manifest = readManifestUnverified(built);
    const written = raw({ manifest: { ...manifest } });
    assert.ok(built.subarray(0, sigBlockOf(built)).equals(written.subarray(0, sigBlockOf(written))));
  });

  test('an application carries its app manifest', () => {
    const v = verifyPackage(build({ manifest: appManifest }), T1);
    assert.deepEqual(v.manifest.appManifest, appManifest.appManifest);
  });

  test('file order in the input does not change the package', () => {
    const a = build();
    const b = build({ files: [...smallFiles].reverse() });
    assert.equal(packageDigest(a), packageDigest(b));
  });

  test('a 1 MiB package round-trips', () => {
    const big = Buffer.alloc(1024 * 1024, 7);
    const v = verifyPackage(build({ files: [...smallFiles, { path: 'data/blob', content: big }] }), T1);
    assert.ok(v.files.find((f) => f.path === 'data/blob')?.content.equals(big));
  });

  test('an empty file and a package of one file verify', () => {
    const v = verifyPackage(build({ files: [{ path: 'bin/run', content: Buffer.alloc(0) }] }), T1);
    assert.equal(v.files.length, 1);
    assert.equal(v.files[0]?.content.length, 0);
  });

  test('a trust lookup function works like a map', () => {
    const v = verifyPackage(build(), (id) => (id === id1 ? k1.publicKey : undefined));
    assert.deepEqual(v.signedBy, [id1]);
  });

  test('verification accepts a Uint8Array view at an offset', () => {
    const pkg = build();
    const outer = Buffer.concat([Buffer.alloc(3), pkg]);
    const view = new Uint8Array(outer.buffer, outer.byteOffset + 3, pkg.length);
    assert.deepEqual(verifyPackage(view, T1).signedBy, [id1]);
  });
});

describe('image package signatures', () => {
  test('refuses a package signed only by an untrusted key', () => {
    assertCode(() => verifyPackage(build(), trust(k2.publicKey)), 'IMAGE_SIGNATURE_UNTRUSTED');
    assertCode(() => verifyPackage(build(), new Map()), 'IMAGE_SIGNATURE_UNTRUSTED');
  });

  test('carries an untrusted signature beside a trusted one, unless every signer must be trusted', () => {
    const pkg = build({ signers: [{ privateKey: k3.privateKey }, { privateKey: k1.privateKey }] });
    assert.deepEqual(verifyPackage(pkg, T1).signedBy, [id1]);
    assertCode(() => verifyPackage(pkg, T1, { requireAllTrusted: true }), 'IMAGE_SIGNATURE_UNTRUSTED');
    assert.deepEqual(
      verifyPackage(pkg, trust(k1.publicKey, k3.publicKey), { requireAllTrusted: true }).signedBy,
      [id3, id1],
    );
  });

  test('refuses a valid signature taken from another package', () => {
    const a = build();
    const b = build({ manifest: { ...runtimeManifest, version: '1.2.4' } });
    const moved = Buffer.concat([b.subarray(0, sigBlockOf(b)), a.subarray(sigBlockOf(a))]);
    assertCode(() => verifyPackage(moved, T1), 'IMAGE_SIGNATURE_INVALID');
  });

  test('refuses signatures whose key ids were swapped between two trusted keys', () => {
    const pkg = Buffer.from(
      build({ signers: [{ privateKey: k1.privateKey }, { privateKey: k2.privateKey }] }),
    );
    const s = sigBlockOf(pkg) + 1;
    const second = s + 34 + pkg.readUInt16BE(s + 32);
    Buffer.from(id2, 'hex').copy(pkg, s);
    Buffer.from(id1, 'hex').copy(pkg, second);
    assertCode(() => verifyPackage(pkg, T12), 'IMAGE_SIGNATURE_INVALID');
  });

  test('a bad signature by a trusted key is an error even when another trusted key signed', () => {
    const pkg = Buffer.from(
      build({ signers: [{ privateKey: k1.privateKey }, { privateKey: k2.privateKey }] }),
    );
    pkg[pkg.length - 1] = (pkg[pkg.length - 1] as number) ^ 1; // inside k2's signature
    assertCode(() => verifyPackage(pkg, T12), 'IMAGE_SIGNATURE_INVALID');
    assert.deepEqual(verifyPackage(pkg, T1).signedBy, [id1], 'k2 unknown: its signature is only carried');
  });

  test('refuses a signature by a key listed in the trust map under another key id', () => {
    assertCode(() => verifyPackage(build(), new Map([[id1, k2.publicKey]])), 'IMAGE_KEY_UNSUPPORTED');
  });

  test('refuses two signatures by the same key', () => {
    const pkg = build();
    const s = sigBlockOf(pkg);
    const entry = pkg.subarray(s + 1);
    assertCode(
      () => verifyPackage(Buffer.concat([pkg.subarray(0, s), Buffer.from([2]), entry, entry]), T1),
      'IMAGE_SIGNATURE_DUPLICATE',
    );
    assertCode(() => addSignature(pkg, k1.privateKey), 'IMAGE_SIGNATURE_DUPLICATE');
    assertCode(
      () => build({ signers: [{ privateKey: k1.privateKey }, { privateKey: k1.privateKey }] }),
      'IMAGE_SIGNATURE_DUPLICATE',
    );
  });

  test('addSignature appends a signature over the same signed region', () => {
    const pkg = build();
    const more = addSignature(pkg, k2.privateKey);
    assert.equal(packageDigest(more), packageDigest(pkg));
    assert.deepEqual(verifyPackage(more, T12).signedBy, [id1, id2]);
    assert.deepEqual(verifyPackage(more, trust(k2.publicKey)).signedBy, [id2]);
  });

  test('addSignature refuses a package it would not verify the contents of', () => {
    assertCode(
      () => addSignature(raw({ manifest: { name: '-bad' } }), k2.privateKey),
      'IMAGE_MANIFEST_INVALID',
    );
    assertCode(
      () => addSignature(Buffer.concat([build(), Buffer.from([0])]), k2.privateKey),
      'IMAGE_TRAILING_BYTES',
    );
  });

  test(`at most ${MAX_SIGNATURES} signatures`, () => {
    const keys = Array.from({ length: MAX_SIGNATURES + 1 }, () => newKey().privateKey);
    const eight = build({ signers: keys.slice(0, MAX_SIGNATURES).map((privateKey) => ({ privateKey })) });
    assert.equal(
      verifyPackage(eight, (id) => (id === keyIdOf(keys[0] as KeyObject) ? keys[0] : undefined)).signedBy
        .length,
      1,
    );
    assertCode(() => addSignature(eight, keys[MAX_SIGNATURES] as KeyObject), 'IMAGE_LIMIT_EXCEEDED');
    assertCode(() => build({ signers: keys.map((privateKey) => ({ privateKey })) }), 'IMAGE_LIMIT_EXCEEDED');
    const nine = raw({ keys });
    assertCode(() => verifyPackage(nine, T1), 'IMAGE_LIMIT_EXCEEDED');
  });

  test('refuses a package without signatures, and a build without signers', () => {
    const pkg = build();
    const s = sigBlockOf(pkg);
    assertCode(
      () => verifyPackage(Buffer.concat([pkg.subarray(0, s), Buffer.from([0])]), T1),
      'IMAGE_SIGNATURE_MISSING',
    );
    assertCode(() => build({ signers: [] }), 'IMAGE_SIGNATURE_MISSING');
  });

  test('refuses a signature length outside 8..72 bytes', () => {
    const pkg = build();
    const s = sigBlockOf(pkg);
    for (const length of [0, 7, 73, 0xffff]) {
      const bad = Buffer.from(pkg);
      bad.writeUInt16BE(length, s + 1 + 32);
      assertCode(() => verifyPackage(bad, T1), 'IMAGE_SIGNATURE_MALFORMED', String(length));
    }
  });

  test('refuses keys that are not ECDSA P-256, and public keys as signers', () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const ed = generateKeyPairSync('ed25519');
    for (const key of [p384.privateKey, ed.privateKey, k1.publicKey]) {
      assertCode(() => build({ signers: [{ privateKey: key }] }), 'IMAGE_KEY_UNSUPPORTED');
    }
    assertCode(() => keyIdOf(p384.publicKey), 'IMAGE_KEY_UNSUPPORTED');
    assertCode(() => verifyPackage(build(), () => ed.publicKey), 'IMAGE_KEY_UNSUPPORTED');
  });

  test('the key id is the SHA-256 of the DER SubjectPublicKeyInfo, from a public or private key', () => {
    assert.equal(id1, sha(k1.publicKey.export({ type: 'spki', format: 'der' })).toString('hex'));
    assert.equal(keyIdOf(k1.privateKey), id1);
  });
});

describe('image package framing', () => {
  test('refuses every truncation of a package', () => {
    const pkg = build({ signers: [{ privateKey: k1.privateKey }, { privateKey: k2.privateKey }] });
    for (let n = 0; n < pkg.length; n++) {
      assertCode(() => verifyPackage(pkg.subarray(0, n), T12), 'IMAGE_TRUNCATED', `prefix ${n}`);
    }
  });

  test('no flipped byte anywhere in a package with one signature verifies', () => {
    const pkg = build();
    for (let i = 0; i < pkg.length; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = Buffer.from(pkg);
        bad[i] = (bad[i] as number) ^ mask;
        assert.throws(() => verifyPackage(bad, T12), HeptadError, `offset ${i} mask ${mask}`);
      }
    }
  });

  test('with two signatures, a flipped byte is refused or only removes a signer (the block is not signed)', () => {
    const pkg = build({ signers: [{ privateKey: k1.privateKey }, { privateKey: k2.privateKey }] });
    const digest = packageDigest(pkg);
    const s = sigBlockOf(pkg);
    const secondKeyId = s + 1 + 34 + pkg.readUInt16BE(s + 33);
    for (let i = 0; i < pkg.length; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = Buffer.from(pkg);
        bad[i] = (bad[i] as number) ^ mask;
        const inKeyId = (i >= s + 1 && i < s + 33) || (i >= secondKeyId && i < secondKeyId + 32);
        if (!inKeyId) {
          assert.throws(() => verifyPackage(bad, T12), HeptadError, `offset ${i} mask ${mask}`);
          continue;
        }
        // A changed key id turns that signature into one by an unknown key: carried, not counted.
        const v = verifyPackage(bad, T12);
        assert.equal(v.digest, digest);
        assert.equal(v.signedBy.length, 1, `offset ${i}`);
        assertCode(() => verifyPackage(bad, T12, { requireAllTrusted: true }), 'IMAGE_SIGNATURE_UNTRUSTED');
      }
    }
  });

  test('refuses bytes after the last signature', () => {
    for (const extra of [[0], [1, 2, 3]]) {
      assertCode(
        () => verifyPackage(Buffer.concat([build(), Buffer.from(extra)]), T1),
        'IMAGE_TRAILING_BYTES',
      );
    }
  });

  test('refuses another magic, format version or flags', () => {
    const cases: Array<[string, (b: Buffer) => void, string]> = [
      ['magic', (b) => b.write('HPKH', 0, 'latin1'), 'IMAGE_MAGIC_INVALID'],
      ['lowercase magic', (b) => b.write('hpkg', 0, 'latin1'), 'IMAGE_MAGIC_INVALID'],
      ['version 0', (b) => b.writeUInt16BE(0, 4), 'IMAGE_VERSION_UNSUPPORTED'],
      ['version 2', (b) => b.writeUInt16BE(2, 4), 'IMAGE_VERSION_UNSUPPORTED'],
      ['flags 1', (b) => b.writeUInt16BE(1, 6), 'IMAGE_VERSION_UNSUPPORTED'],
      ['flags 0x8000', (b) => b.writeUInt16BE(0x8000, 6), 'IMAGE_VERSION_UNSUPPORTED'],
    ];
    for (const [label, change, code] of cases) {
      const pkg = Buffer.from(build());
      change(pkg);
      assertCode(() => verifyPackage(pkg, T1), code, label);
    }
    assertCode(() => verifyPackage(Buffer.from('not a package at all'), T1), 'IMAGE_MAGIC_INVALID');
  });

  test('refuses huge length fields without allocating or reading past the end', () => {
    const pkg = build();
    const manifestMax = Buffer.from(pkg);
    manifestMax.writeUInt32BE(0xffffffff, 8);
    assertCode(() => verifyPackage(manifestMax, T1), 'IMAGE_LIMIT_EXCEEDED', 'manifest u32 max');
    assertCode(
      () => verifyPackage(manifestMax, T1, { limits: { maxManifestSize: 2 ** 32 } }),
      'IMAGE_TRUNCATED',
      'manifest u32 max, limit raised',
    );
    for (const n of [2n ** 64n - 1n, 2n ** 53n, 2n ** 32n]) {
      const payloadMax = Buffer.from(pkg);
      payloadMax.writeBigUInt64BE(n, 12);
      assertCode(() => verifyPackage(payloadMax, T1), 'IMAGE_TRUNCATED', `payload ${n}`);
    }
    // Inside the signed payload: counts and sizes at their maximum.
    const file = { path: 'bin/run', content: Buffer.from('x') };
    assertCode(
      () => verifyPackage(raw({ payload: rawPayload([file], 0xffffffff) }), T1),
      'IMAGE_LIMIT_EXCEEDED',
      'count',
    );
    assertCode(
      () => verifyPackage(raw({ payload: rawPayload([{ ...file, size: 2n ** 64n - 1n }]) }), T1),
      'IMAGE_PAYLOAD_MALFORMED',
      'size',
    );
    const longPath = rawPayload([file]);
    longPath.writeUInt16BE(0xffff, 4);
    assertCode(() => verifyPackage(raw({ payload: longPath }), T1), 'IMAGE_PAYLOAD_MALFORMED', 'path length');
  });
});

describe('image package manifest', () => {
  test('refuses a manifest that is not in its canonical encoding', () => {
    const m = readManifestUnverified(build());
    const text = canonical(m);
    const cases: Array<[string, string | Buffer]> = [
      ['whitespace', JSON.stringify(m, null, 1)],
      ['space after colon', text.replace('"name":', '"name": ')],
      [
        'key order',
        `{"version":${JSON.stringify(m.version)},${text.slice(1).replace(`,"version":${JSON.stringify(m.version)}`, '')}`,
      ],
      ['escaped character', text.replace('heptad-runtime', 'heptad\\u002druntime')],
      ['duplicate key', text.replace('{', '{"name":"x",')],
      ['byte order mark', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])],
      ['not UTF-8', Buffer.concat([Buffer.from(text.slice(0, -1)), Buffer.from([0xff, 0x7d])])],
      ['not JSON', 'manifest'],
      ['empty', ''],
      ['number spelling', text.replace('"securityVersion":4', '"securityVersion":4.0')],
      ['trailing newline', `${text}\n`],
    ];
    for (const [label, manifest] of cases) {
      assertCode(() => verifyPackage(raw({ manifest }), T1), 'IMAGE_MANIFEST_NOT_CANONICAL', label);
    }
    assert.equal(verifyPackage(raw({ manifest: text }), T1).manifest.name, 'heptad-runtime');
  });

  test('refuses a manifest that is not an object', () => {
    for (const manifest of ['[]', 'null', '"x"', '1']) {
      assertCode(() => verifyPackage(raw({ manifest }), T1), 'IMAGE_MANIFEST_INVALID', manifest);
    }
  });

  test('reports every bad field at once, unknown fields included', () => {
    try {
      buildPackage({
        manifest: { ...runtimeManifest, name: '', version: '1', extra: true } as unknown as BaseManifest,
        files: smallFiles,
        signers: [{ privateKey: k1.privateKey }],
      });
      assert.fail('built');
    } catch (e) {
      assert.ok(e instanceof HeptadError);
      assert.equal(e.code, 'IMAGE_MANIFEST_INVALID');
      assert.deepEqual(e.fields.map((f) => f.field).sort(), ['/extra', '/name', '/version']);
    }
    assertCode(() => verifyPackage(raw({ manifest: { extra: 1 } }), T1), 'IMAGE_MANIFEST_INVALID');
  });

  const fieldCases: Array<[string, Partial<Record<keyof ImageManifest, unknown>>, boolean]> = [
    ['componentId uppercase', { componentId: '3F2B8C1E-9A4D-4E6B-8F00-1C2D3E4F5A6B' }, false],
    ['componentId braces', { componentId: '{3f2b8c1e-9a4d-4e6b-8f00-1c2d3e4f5a6b}' }, false],
    ['componentId missing', { componentId: undefined }, false],
    ['imageId short', { imageId: 'a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5' }, false],
    ['name of 64', { name: `a${'b'.repeat(63)}` }, true],
    ['name of 65', { name: `a${'b'.repeat(64)}` }, false],
    ['name with dots, dashes, underscores', { name: 'A1._-z' }, true],
    ['name starting with a dot', { name: '.hidden' }, false],
    ['name with a slash', { name: 'a/b' }, false],
    ['name empty', { name: '' }, false],
    ['version with pre-release and build', { version: '1.0.0-alpha.1+build.5' }, true],
    ['version two parts', { version: '1.0' }, false],
    ['version with v', { version: 'v1.0.0' }, false],
    ['version leading zero', { version: '01.0.0' }, false],
    ['version pre-release leading zero', { version: '1.0.0-01' }, false],
    ['version of 129 characters', { version: `1.0.0-${'a'.repeat(123)}` }, false],
    ['version not a string', { version: 1 }, false],
    ['securityVersion 0', { securityVersion: 0 }, true],
    ['securityVersion 2^31-1', { securityVersion: 2 ** 31 - 1 }, true],
    ['securityVersion 2^31', { securityVersion: 2 ** 31 }, false],
    ['securityVersion -1', { securityVersion: -1 }, false],
    ['securityVersion 1.5', { securityVersion: 1.5 }, false],
    ['securityVersion string', { securityVersion: '4' }, false],
    ['type other', { type: 'library' }, false],
    ['entryPoint absolute', { entryPoint: '/bin/run' }, false],
    ['createdAt without milliseconds', { createdAt: '2026-01-01T00:00:00Z' }, false],
    ['createdAt with offset', { createdAt: '2026-01-01T00:00:00.000+00:00' }, false],
    ['createdAt impossible date', { createdAt: '2026-02-30T00:00:00.000Z' }, false],
    ['createdAt a number', { createdAt: 1767225600000 }, false],
    ['appManifest for a runtime', { appManifest: {} }, false],
  ];
  for (const [label, change, ok] of fieldCases) {
    test(`${ok ? 'accepts' : 'refuses'} ${label}`, () => {
      const manifest = { ...runtimeManifest, ...change } as BaseManifest;
      const run = () => build({ manifest });
      if (ok) assert.equal(verifyPackage(run(), T1).manifest.name, manifest.name);
      else assertCode(run, 'IMAGE_MANIFEST_INVALID', label);
      if (!ok)
        assertCode(
          () => verifyPackage(raw({ manifest: change }), T1),
          'IMAGE_MANIFEST_INVALID',
          `${label} (raw)`,
        );
    });
  }

  test('an application requires an object app manifest', () => {
    const { appManifest: _a, ...noApp } = appManifest;
    assertCode(() => build({ manifest: noApp }), 'IMAGE_MANIFEST_INVALID');
    for (const bad of [[], null, 'x', 1]) {
      assertCode(
        () => build({ manifest: { ...appManifest, appManifest: bad } as unknown as BaseManifest }),
        'IMAGE_MANIFEST_INVALID',
        JSON.stringify(bad),
      );
    }
  });

  test('refuses values that are not JSON in the app manifest, and nesting deeper than 32', () => {
    for (const bad of [
      { a: undefined },
      { a: Number.NaN },
      { a: () => 1 },
      { a: new Date(0) },
      { a: new Array(2) },
    ]) {
      assertCode(
        () => build({ manifest: { ...appManifest, appManifest: bad } as unknown as BaseManifest }),
        'IMAGE_MANIFEST_INVALID',
      );
    }
    const nest = (n: number): unknown => (n === 0 ? 1 : { a: nest(n - 1) });
    assert.ok(build({ manifest: { ...appManifest, appManifest: nest(31) } as BaseManifest }));
    assertCode(
      () => build({ manifest: { ...appManifest, appManifest: nest(32) } as BaseManifest }),
      'IMAGE_MANIFEST_INVALID',
    );
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    const text = canonical({ ...appManifest, payloadSha256: '0'.repeat(64), payloadSize: 4 }).replace(
      '"appManifest":{',
      `"appManifest":{"a":${deep},`,
    );
    assertCode(() => verifyPackage(raw({ manifest: text }), T1), 'IMAGE_MANIFEST_INVALID', 'deep');
  });

  test('the entry point must be a payload file', () => {
    assertCode(
      () => build({ manifest: { ...runtimeManifest, entryPoint: 'bin/other' } }),
      'IMAGE_MANIFEST_INVALID',
    );
    assertCode(
      () => build({ manifest: { ...runtimeManifest, entryPoint: 'bin' } }),
      'IMAGE_MANIFEST_INVALID',
    );
    assertCode(
      () => verifyPackage(raw({ manifest: { entryPoint: 'bin/other' } }), T1),
      'IMAGE_MANIFEST_INVALID',
    );
  });

  test('refuses a payload that does not match payloadSha256, payloadSize or the header', () => {
    assertCode(
      () => verifyPackage(raw({ manifest: { payloadSha256: '0'.repeat(64) } }), T1),
      'IMAGE_PAYLOAD_MISMATCH',
    );
    const size = rawPayload(smallFiles).length;
    assertCode(
      () => verifyPackage(raw({ manifest: { payloadSize: size + 1 } }), T1),
      'IMAGE_PAYLOAD_MISMATCH',
    );
  });
});

describe('image package payload', () => {
  const run = { path: 'bin/run', content: Buffer.from('x') };
  test('refuses a file whose content does not match its SHA-256', () => {
    assertCode(
      () => verifyPackage(raw({ payload: rawPayload([{ ...run, digest: sha(Buffer.from('y')) }]) }), T1),
      'IMAGE_FILE_DIGEST_MISMATCH',
    );
  });

  test('refuses files out of path order', () => {
    const files = [run, { path: 'a', content: Buffer.alloc(0) }];
    assertCode(() => verifyPackage(raw({ payload: rawPayload(files) }), T1), 'IMAGE_PAYLOAD_MALFORMED');
  });

  test('refuses modes other than 0644 and 0755', () => {
    for (const mode of [0o777, 0o4755, 0o600, 0o120777, 0]) {
      assertCode(
        () => verifyPackage(raw({ payload: rawPayload([{ ...run, mode }]) }), T1),
        'IMAGE_PAYLOAD_MALFORMED',
      );
      assertCode(() => build({ files: [{ ...run, mode }] }), 'IMAGE_PAYLOAD_MALFORMED');
    }
  });

  test('refuses bytes after the last file, and a file count larger than the files', () => {
    assertCode(
      () => verifyPackage(raw({ payload: rawPayload([run], 1, Buffer.from([0])) }), T1),
      'IMAGE_TRAILING_BYTES',
    );
    assertCode(() => verifyPackage(raw({ payload: rawPayload([run], 2) }), T1), 'IMAGE_PAYLOAD_MALFORMED');
    // A payload too short for its file count cannot even be described: payloadSize is at least 4.
    assertCode(
      () => verifyPackage(raw({ payload: rawPayload([run]).subarray(0, 3) }), T1),
      'IMAGE_MANIFEST_INVALID',
    );
  });

  test('refuses bad paths and colliding paths inside a signed payload', () => {
    const withPath = (path: string | Buffer) =>
      raw({ payload: rawPayload([run, { path, content: Buffer.alloc(0) }]) });
    assertCode(() => verifyPackage(withPath('../x'), T1), 'IMAGE_PATH_INVALID');
    assertCode(() => verifyPackage(withPath(Buffer.from('bin/é')), T1), 'IMAGE_PATH_INVALID');
    assertCode(() => verifyPackage(withPath(Buffer.from('bin/r\0n')), T1), 'IMAGE_PATH_INVALID');
    assertCode(() => verifyPackage(withPath('bin/run'), T1), 'IMAGE_PATH_CONFLICT');
    assertCode(() => verifyPackage(withPath('bin/run/x'), T1), 'IMAGE_PATH_CONFLICT');
    assertCode(() => verifyPackage(withPath('bin/RUN'), T1), 'IMAGE_PATH_CONFLICT');
  });
});

describe('image package paths', () => {
  const ok = (path: string) =>
    assert.ok(verifyPackage(build({ files: [...smallFiles, { path, content: Buffer.alloc(1) }] }), T1));
  const refused = (path: string, code = 'IMAGE_PATH_INVALID') =>
    assertCode(
      () => build({ files: [...smallFiles, { path, content: Buffer.alloc(1) }] }),
      code,
      JSON.stringify(path),
    );
  const c100 = 'c'.repeat(100);

  test('accepts relative paths of the allowed characters', () => {
    ok('lib/libx.so.1');
    ok('A-z_0.9/-x');
    ok('.config');
    ok('a..b');
  });
  test('refuses an absolute path', () => refused('/etc/passwd'));
  test('refuses a .. component', () => {
    refused('..');
    refused('../x');
    refused('lib/../../x');
    refused('lib/..');
  });
  test('refuses a . component', () => {
    refused('.');
    refused('./x');
    refused('lib/./x');
  });
  test('refuses an empty component and the empty path', () => {
    refused('');
    refused('lib//x');
    refused('lib/');
  });
  test('refuses a backslash', () => refused('lib\\..\\x'));
  test('refuses NUL and control characters', () => {
    refused('lib/x\0');
    refused('lib/x\n');
  });
  test('refuses characters outside [A-Za-z0-9._/-]', () => {
    for (const p of ['a b', 'é', 'a:b', 'a*b', 'ａ', 'a~']) refused(p);
  });
  test('a path of 255 bytes is accepted, 256 refused', () => {
    const p255 = `${c100}/${c100}/${'d'.repeat(53)}`;
    assert.equal(p255.length, 255);
    ok(p255);
    refused(`${p255}d`);
  });
  test('a component of 100 bytes is accepted, 101 refused', () => {
    ok(c100);
    refused(`x/${c100}c`);
  });
  test('refuses the same path twice', () => refused('bin/run', 'IMAGE_PATH_CONFLICT'));
  test('refuses two paths that differ only by case', () => {
    refused('BIN/run', 'IMAGE_PATH_CONFLICT');
    refused('Etc/Config.JSON', 'IMAGE_PATH_CONFLICT');
  });
  test('refuses a path that is a file and a folder of another file', () => {
    refused('bin/run/x', 'IMAGE_PATH_CONFLICT');
    refused('bin/RUN/x', 'IMAGE_PATH_CONFLICT');
    refused('etc', 'IMAGE_PATH_CONFLICT');
  });
  test('refuses an invalid entry point path', () => {
    assertCode(
      () => build({ manifest: { ...runtimeManifest, entryPoint: '../run' } }),
      'IMAGE_MANIFEST_INVALID',
    );
  });
});

describe('image package limits', () => {
  test(`${DEFAULT_MAX_FILES} files are accepted, one more refused`, () => {
    const files = Array.from({ length: DEFAULT_MAX_FILES }, (_, i) => ({
      path: i === 0 ? 'bin/run' : `f/${i}`,
      content: Buffer.alloc(0),
    }));
    assert.equal(verifyPackage(build({ files }), T1).files.length, DEFAULT_MAX_FILES);
    const more = [...files, { path: 'g', content: Buffer.alloc(0) }];
    assertCode(() => build({ files: more }), 'IMAGE_LIMIT_EXCEEDED');
    const small = rawPayload([...more].sort((a, b) => (a.path < b.path ? -1 : 1)));
    assertCode(() => verifyPackage(raw({ payload: small }), T1), 'IMAGE_LIMIT_EXCEEDED');
    assert.ok(verifyPackage(raw({ payload: small }), T1, { limits: { maxFiles: DEFAULT_MAX_FILES + 1 } }));
  });

  test('the package size limit holds just at and just over', () => {
    const pkg = build();
    assert.ok(verifyPackage(pkg, T1, { limits: { maxPackageSize: pkg.length } }));
    assertCode(
      () => verifyPackage(pkg, T1, { limits: { maxPackageSize: pkg.length - 1 } }),
      'IMAGE_TOO_LARGE',
    );
    assertCode(() => build({ limits: { maxPackageSize: 100 } }), 'IMAGE_TOO_LARGE');
    assertCode(
      () => addSignature(pkg, k2.privateKey, { maxPackageSize: pkg.length + 10 }),
      'IMAGE_TOO_LARGE',
    );
  });

  test('the manifest size limit holds just at and just over', () => {
    const pkg = build();
    const size = pkg.readUInt32BE(8);
    assert.ok(verifyPackage(pkg, T1, { limits: { maxManifestSize: size } }));
    assertCode(
      () => verifyPackage(pkg, T1, { limits: { maxManifestSize: size - 1 } }),
      'IMAGE_LIMIT_EXCEEDED',
    );
    assertCode(() => build({ limits: { maxManifestSize: size - 1 } }), 'IMAGE_LIMIT_EXCEEDED');
    assert.ok(build({ limits: { maxManifestSize: size } }));
  });

  test('the app manifest size limit holds just at and just over', () => {
    const size = Buffer.byteLength(canonical(appManifest.appManifest));
    assert.ok(build({ manifest: appManifest, limits: { maxAppManifestSize: size } }));
    assertCode(
      () => build({ manifest: appManifest, limits: { maxAppManifestSize: size - 1 } }),
      'IMAGE_LIMIT_EXCEEDED',
    );
    const pkg = build({ manifest: appManifest });
    assertCode(
      () => verifyPackage(pkg, T1, { limits: { maxAppManifestSize: size - 1 } }),
      'IMAGE_LIMIT_EXCEEDED',
    );
  });
});
