// A TUF repository a test controls completely (and so can make hostile): keys per role, any
// version, expiry, threshold and signature, served on loopback with the layout the Heptad service
// uses (/v1/device/tuf/{image|director}/metadata/…, hash-prefixed targets with HTTP ranges).
import { createHash, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TargetCustom } from '@heptad/protocol';
import {
  Key,
  Metadata,
  MetaFile,
  Root,
  Signature,
  Snapshot,
  TargetFile,
  Targets,
  Timestamp,
} from '@tufjs/models';

export type Role = 'root' | 'targets' | 'snapshot' | 'timestamp';
const ROLES: Role[] = ['root', 'targets', 'snapshot', 'timestamp'];

export interface TestKey {
  readonly id: string;
  readonly key: Key;
  readonly priv: KeyObject;
}

export function newKey(): TestKey {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const id = createHash('sha256').update(pem).digest('hex');
  return {
    id,
    priv: privateKey,
    key: new Key({ keyID: id, keyType: 'ecdsa', scheme: 'ecdsa-sha2-nistp256', keyVal: { public: pem } }),
  };
}

const signer = (k: TestKey) => (data: Buffer) =>
  new Signature({ keyID: k.id, sig: sign('sha256', data, k.priv).toString('hex') });

const inDays = (d: number, from = Date.now()) =>
  new Date(from + d * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** One repository: its keys, its targets and every metadata file it ever published. */
export class Repo {
  keys: Record<Role, TestKey[]> = {
    root: [newKey()],
    targets: [newKey()],
    snapshot: [newKey()],
    timestamp: [newKey()],
  };
  threshold: Record<Role, number> = { root: 1, targets: 1, snapshot: 1, timestamp: 1 };
  /** root versions (all kept, as TUF requires) */
  readonly roots: Buffer[] = [];
  readonly files = new Map<string, Buffer>();
  readonly targets = new Map<string, { bytes: Buffer; custom: TargetCustom }>();
  version = 0;
  /** the timestamp served as timestamp.json */
  timestamp: Buffer = Buffer.alloc(0);

  constructor() {
    this.publishRoot();
  }

  rootMetadata(version = this.roots.length + 1): Metadata<Root> {
    const root = new Root({ version, specVersion: '1.0.31', expires: inDays(365), consistentSnapshot: true });
    for (const role of ROLES) {
      for (const k of this.keys[role]) root.addKey(k.key, role);
      const r = root.roles[role];
      if (r) (r as { threshold: number }).threshold = this.threshold[role];
    }
    return new Metadata(root);
  }

  /** Publishes the next root version, signed by `signers` (default: the current root keys). */
  publishRoot(signers: TestKey[] = this.keys.root): Buffer {
    const md = this.rootMetadata();
    for (const k of signers) md.sign(signer(k), true);
    const bytes = Buffer.from(JSON.stringify(md.toJSON()));
    this.roots.push(bytes);
    this.files.set(`${this.roots.length}.root.json`, bytes);
    this.files.set('root.json', bytes);
    return bytes;
  }

  add(bytes: Buffer, custom: TargetCustom, path: string): void {
    this.targets.set(path, { bytes, custom });
  }

  /**
   * Publishes targets → snapshot → timestamp at the next version. Options make it hostile:
   * another signing key per role, an expiry in the past, a lower version, a target entry that
   * lies about its bytes.
   */
  publish(
    o: {
      signWith?: Partial<Record<Role, TestKey[]>>;
      expiresInDays?: Partial<Record<Role, number>>;
      version?: number;
      lie?: Record<string, { length?: number; sha256?: string }>;
    } = {},
  ): void {
    const v = o.version ?? ++this.version;
    const exp = (r: Role) => inDays(o.expiresInDays?.[r] ?? 7);
    const signed = <T extends Root | Targets | Snapshot | Timestamp>(role: Role, s: T): Buffer => {
      const md = new Metadata(s);
      for (const k of o.signWith?.[role] ?? this.keys[role]) md.sign(signer(k), true);
      return Buffer.from(JSON.stringify(md.toJSON()));
    };
    const targets = new Targets({ version: v, specVersion: '1.0.31', expires: exp('targets') });
    for (const [path, t] of this.targets) {
      const lie = o.lie?.[path];
      targets.targets[path] = new TargetFile({
        path,
        length: lie?.length ?? t.bytes.length,
        hashes: { sha256: lie?.sha256 ?? sha(t.bytes) },
        unrecognizedFields: { custom: { ...t.custom } },
      });
    }
    const tBytes = signed('targets', targets);
    this.files.set(`${v}.targets.json`, tBytes);
    const snapshot = new Snapshot({
      version: v,
      specVersion: '1.0.31',
      expires: exp('snapshot'),
      meta: {
        'targets.json': new MetaFile({ version: v, length: tBytes.length, hashes: { sha256: sha(tBytes) } }),
      },
    });
    const sBytes = signed('snapshot', snapshot);
    this.files.set(`${v}.snapshot.json`, sBytes);
    const ts = new Timestamp({
      version: v,
      specVersion: '1.0.31',
      expires: exp('timestamp'),
      snapshotMeta: new MetaFile({ version: v, length: sBytes.length, hashes: { sha256: sha(sBytes) } }),
    });
    this.timestamp = signed('timestamp', ts);
    this.files.set('timestamp.json', this.timestamp);
  }
}

/** The two repositories of one tenant, served like the Heptad service serves them. */
export class TufServer {
  readonly image = new Repo();
  readonly director = new Repo();
  /** target bytes by hash-prefixed path */
  readonly blobs = new Map<string, Buffer>();
  /** hostile behaviours of the target route */
  extraBytes = 0;
  trickleMs = 0;
  requests: string[] = [];
  #server: http.Server | undefined;
  url = '';

  /** Adds an image to the image repository (and, with `director`, names it for the device). */
  addImage(bytes: Buffer, custom: TargetCustom, path: string, director = true): void {
    this.image.add(bytes, custom, path);
    if (director) this.director.add(bytes, custom, path);
    const slash = path.lastIndexOf('/');
    this.blobs.set(`${path.slice(0, slash + 1)}${sha(bytes)}.${path.slice(slash + 1)}`, bytes);
  }

  async start(): Promise<void> {
    this.#server = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      this.requests.push(u.pathname);
      const m = /^\/v1\/device\/tuf\/(image|director)\/metadata\/([^/]+)$/.exec(u.pathname);
      if (m) {
        const repo = m[1] === 'image' ? this.image : this.director;
        const f = repo.files.get(decodeURIComponent(m[2] ?? ''));
        if (!f) return void res.writeHead(404).end('{}');
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(f);
      }
      const t = /^\/v1\/device\/tuf\/image\/targets\/(.+)$/.exec(u.pathname);
      const blob = t ? this.blobs.get(decodeURIComponent(t[1] ?? '')) : undefined;
      if (!blob) return void res.writeHead(404).end();
      const r = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''));
      const start = r ? Number(r[1]) : 0;
      const end = r ? Math.min(Number(r[2]), blob.length - 1) : blob.length - 1;
      const body = Buffer.concat([blob.subarray(start, end + 1), Buffer.alloc(this.extraBytes, 0x41)]);
      res.writeHead(r ? 206 : 200, {
        ...(r ? { 'content-range': `bytes ${start}-${end}/${blob.length}` } : {}),
      });
      if (this.trickleMs === 0) return void res.end(body);
      // Slow retrieval: one byte per tick, for as long as the client stays.
      let i = 0;
      const tick = setInterval(() => {
        if (i >= body.length || res.destroyed) {
          clearInterval(tick);
          res.end();
          return;
        }
        res.write(body.subarray(i, i + 1));
        i += 1;
      }, this.trickleMs);
      res.on('close', () => clearInterval(tick));
    });
    await new Promise<void>((r) => this.#server?.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    return new Promise((r) => {
      this.#server?.closeAllConnections();
      this.#server?.close(() => r());
    });
  }
}
