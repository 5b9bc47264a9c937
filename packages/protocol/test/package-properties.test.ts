// Property runs over the image package format: arbitrary bytes (also behind a valid header)
// never verify and are always refused with a coded HeptadError; random valid manifests and file
// sets round-trip; random damage to a valid package never verifies.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { HeptadError } from '../src/errors.ts';
import {
  type BuildPackageOptions,
  buildPackage,
  keyIdOf,
  packageDigest,
  readManifestUnverified,
  verifyPackage,
} from '../src/package/index.ts';

const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const trusted = new Map([[keyIdOf(key.publicKey), key.publicKey]]);

function refusedWithCode(bytes: Uint8Array): void {
  assert.throws(
    () => verifyPackage(bytes, trusted),
    (e: unknown) => e instanceof HeptadError && e.code.startsWith('IMAGE_'),
  );
}

const header = (manifestLength: number, payloadLength: bigint) => {
  const b = Buffer.alloc(20);
  b.write('HPKG', 0, 'latin1');
  b.writeUInt16BE(1, 4);
  b.writeUInt32BE(manifestLength, 8);
  b.writeBigUInt64BE(payloadLength, 12);
  return b;
};

const hexChars = (n: number) =>
  fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
const uuid = fc
  .tuple(hexChars(8), hexChars(4), hexChars(4), hexChars(4), hexChars(12))
  .map((p) => p.join('-'));
const component = fc
  .string({
    unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789._-'),
    minLength: 1,
    maxLength: 12,
  })
  .filter((c) => c !== '.' && c !== '..');
const path = fc.array(component, { minLength: 1, maxLength: 4 }).map((c) => c.join('/'));
const json: fc.Arbitrary<unknown> = fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.parse(JSON.stringify(v)));
const manifestAndFiles = fc
  .record({
    componentId: uuid,
    imageId: uuid,
    name: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
    version: fc.tuple(fc.nat(999), fc.nat(999), fc.nat(999)).map((v) => v.join('.')),
    securityVersion: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    createdAt: fc
      .date({ min: new Date(0), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true })
      .map((d) => d.toISOString()),
    app: fc.option(
      fc
        .dictionary(fc.string({ maxLength: 8 }), json, { maxKeys: 5 })
        .map((d) => JSON.parse(JSON.stringify(d))),
      { nil: undefined },
    ),
    files: fc.uniqueArray(
      fc.record({ path, mode: fc.constantFrom(0o644, 0o755), content: fc.uint8Array({ maxLength: 64 }) }),
      { minLength: 1, maxLength: 8, selector: (f) => f.path.toLowerCase() },
    ),
  })
  // Drop file sets where one path is a folder of another (refused by design, tested elsewhere).
  .filter(
    ({ files }) =>
      !files.some((a) => files.some((b) => b.path.toLowerCase().startsWith(`${a.path.toLowerCase()}/`))),
  );

describe('image package properties', () => {
  test('arbitrary bytes never verify and are refused with a coded error', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), refusedWithCode), { numRuns: 2000 });
  });

  test('arbitrary bytes behind a valid magic and version are refused with a coded error', () => {
    fc.assert(
      fc.property(
        fc.nat(600),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.uint8Array({ maxLength: 600 }),
        (m, p, rest) => refusedWithCode(Buffer.concat([header(m, p), rest])),
      ),
      { numRuns: 2000 },
    );
  });

  test('random valid manifests and file sets round-trip', () => {
    fc.assert(
      fc.property(manifestAndFiles, (r) => {
        const files = r.files.map((f) => ({ path: f.path, mode: f.mode, content: Buffer.from(f.content) }));
        const entryPoint = (files[0] as { path: string }).path;
        const base = {
          componentId: r.componentId,
          imageId: r.imageId,
          name: r.name,
          version: r.version,
          securityVersion: r.securityVersion,
          entryPoint,
          createdAt: r.createdAt,
        };
        const manifest: BuildPackageOptions['manifest'] =
          r.app === undefined
            ? { ...base, type: 'runtime' }
            : { ...base, type: 'application', appManifest: r.app as Record<string, never> };
        const pkg = buildPackage({ manifest, files, signers: [{ privateKey: key.privateKey }] });
        const v = verifyPackage(pkg, trusted);
        assert.deepEqual(
          { ...v.manifest, payloadSha256: undefined, payloadSize: undefined },
          {
            ...manifest,
            payloadSha256: undefined,
            payloadSize: undefined,
          },
        );
        assert.deepEqual(readManifestUnverified(pkg), v.manifest);
        assert.equal(v.digest, packageDigest(pkg));
        const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : 1));
        assert.deepEqual(
          v.files.map((f) => [f.path, f.mode, f.content.toString('hex')]),
          sorted.map((f) => [f.path, f.mode, f.content.toString('hex')]),
        );
      }),
      { numRuns: 200 },
    );
  });

  test('random damage to a valid package never verifies', () => {
    const pkg = buildPackage({
      manifest: {
        componentId: '3f2b8c1e-9a4d-4e6b-8f00-1c2d3e4f5a6b',
        imageId: 'a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d',
        name: 'app',
        version: '1.0.0',
        securityVersion: 1,
        type: 'application',
        entryPoint: 'main.js',
        appManifest: { a: [1, 'x'] },
        createdAt: '2026-01-01T00:00:00.000Z',
      },
      files: [{ path: 'main.js', content: Buffer.from('console.log(1)') }],
      signers: [{ privateKey: key.privateKey }],
    });
    fc.assert(
      fc.property(
        fc.nat(pkg.length - 1),
        fc.nat(pkg.length),
        fc.uint8Array({ minLength: 1, maxLength: 16 }),
        (at, cut, insert) => {
          const changed = Buffer.concat([
            pkg.subarray(0, at),
            Buffer.from(insert),
            pkg.subarray(Math.max(at, Math.min(cut, pkg.length))),
          ]);
          fc.pre(!changed.equals(pkg));
          refusedWithCode(changed);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
