/**
 * The service side of the update metadata (docs/updates.md): per tenant a TUF image repository
 * (every image and every runtime release not withdrawn) and an Uptane-style director repository
 * (per device group: exactly what its devices must run), with keys sealed at rest, automatic
 * re-signing before expiry, key rotation, and a cache that answers devices' polls without
 * touching the store.
 *
 * Writes. Every change that alters what a repository names calls a hook (UpdateMetadataHooks)
 * inside the change's own transaction, so the change and the metadata that names it commit
 * together: a published timestamp never names a snapshot, nor a snapshot a targets file, that
 * is not stored. Each write first locks the tenant's repository row (TufStore.lock) and then
 * re-reads what is published, so two service processes never both sign the same version.
 *
 * Versions. Root versions count 1, 2, 3… per repository (TUF requires it). Every other version
 * of a repository (targets, snapshot, timestamp, of every scope) is drawn from one tenant-wide
 * counter. For the director this is what keeps a device that moves between groups safe: tuf-js
 * refuses a version lower than (or equal to) what it holds, and the destination group is
 * re-signed when a device joins it, so its next versions are above anything the device saw.
 */
import { createHash, createPrivateKey, generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { HeptadError, readManifestUnverified } from '@heptad/protocol';
import type { Logger } from 'pino';
import type { ChangeContext } from '../context.ts';
import type { BlobStore } from '../images/blob-store.ts';
import type { KeyStore } from '../keys/key-store.ts';
import { RuntimeReleaseStore } from '../runtime-releases/release-store.ts';
import type { TufKeysTable, TufRepositoryName, TufRoleName } from '../store/schema.ts';
import type { Store } from '../store/store.ts';
import {
  type PublicTufKey,
  type SignedFile,
  signRoot,
  signSnapshot,
  signTargets,
  signTimestamp,
  type TargetEntry,
  TUF_ROLES,
  type TufSigner,
  targetPathOf,
  targetSetDigest,
  tufKeyIdOf,
} from './metadata.ts';
import type { MetadataRequest } from './requests.ts';
import type { MetadataHead, TufStore } from './tuf-store.ts';

export interface TufOptions {
  /** lifetime of each role's metadata, in days */
  readonly expiryDays: Readonly<Record<TufRoleName, number>>;
  /** a file is re-signed once less than this fraction of its lifetime is left */
  readonly renewFraction: number;
  /** how long a process serves a scope's timestamp/root from memory before re-reading the store */
  readonly cacheMs: number;
}

export const DEFAULT_TUF_OPTIONS: TufOptions = {
  expiryDays: { root: 365, targets: 30, snapshot: 7, timestamp: 1 },
  renewFraction: 0.5,
  cacheMs: 1000,
};

/** The director root is shared by every group of a tenant; the image repository has one scope. */
export const TENANT_SCOPE = '';

const DAY_MS = 86_400_000;
const FILE_CACHE_MAX = 20_000;
const STATE_CACHE_MAX = 100_000;

/** Bytes as served, with their ETag. */
export interface ServedFile {
  readonly bytes: Buffer;
  readonly etag: string;
}

export interface TargetLocation {
  readonly sha256: string;
  readonly length: number;
}

/** A scope's mutable files and what is needed to answer for the immutable ones, in memory. */
interface ScopeState {
  /** serve from memory until (service clock, ms) */
  readonly until: number;
  /** a file is due for re-signing at (service clock, ms) */
  readonly renewAt: number;
  readonly timestamp: ServedFile;
  readonly root: ServedFile & { readonly version: number };
  readonly snapshotVersion: number;
  readonly targetsVersion: number;
  /** image repository: the current targets by path */
  readonly targets: ReadonlyMap<string, TargetLocation> | null;
}

/** Called by other domains inside their own transactions (see the file comment). */
export interface UpdateMetadataHooks {
  /** an image was added */
  imagesChanged(s: Store, tenantId: string): Promise<void>;
  /** a group's deployment, feed or update policy changed */
  groupChanged(s: Store, tenantId: string, groupId: string): Promise<void>;
  /** a device joined a group (moved or claimed into it): its director files get fresh versions */
  deviceJoined(s: Store, tenantId: string, groupId: string): Promise<void>;
  /** a runtime release was published, promoted or withdrawn: every tenant */
  runtimeChanged(s: Store): Promise<void>;
  /** a device group is gone */
  groupDeleted(s: Store, tenantId: string, groupId: string): Promise<void>;
}

export interface RotationResult {
  repository: TufRepositoryName;
  role: TufRoleName;
  keyId: string;
  rootVersion: number;
}

type ActiveKeys = Record<TufRoleName, TufSigner[]>;
type Level = 0 | 1 | 2 | 3;
const LEVEL_OF: Record<Exclude<TufRoleName, 'root'>, Level> = { timestamp: 1, snapshot: 2, targets: 3 };

const etagOf = (bytes: Buffer) => `"${createHash('sha256').update(bytes).digest('hex').slice(0, 32)}"`;
const served = (body: string): ServedFile => {
  const bytes = Buffer.from(body);
  return { bytes, etag: etagOf(bytes) };
};
const sealLabel = (tenantId: string, id: string) => `tuf-key:${tenantId}:${id}`;

export class TufService implements UpdateMetadataHooks {
  readonly #store: Store;
  readonly #keys: KeyStore;
  readonly #blobs: BlobStore;
  readonly #clock: () => Date;
  readonly #options: TufOptions;
  readonly #logger: Logger | undefined;
  readonly #privateKeys = new Map<string, KeyObject>();
  readonly #runtimeManifests = new Map<string, { imageId: string; componentId: string; name: string }>();
  readonly #state = new Map<string, ScopeState>();
  readonly #loading = new Map<string, Promise<ScopeState>>();
  readonly #files = new Map<string, ServedFile>();
  readonly #targetIndexes = new Map<string, ReadonlyMap<string, TargetLocation>>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    store: Store,
    keys: KeyStore,
    blobs: BlobStore,
    clock: () => Date,
    options: Partial<TufOptions> = {},
    logger?: Logger,
  ) {
    this.#store = store;
    this.#keys = keys;
    this.#blobs = blobs;
    this.#clock = clock;
    this.#options = { ...DEFAULT_TUF_OPTIONS, ...options };
    this.#logger = logger;
  }

  // ---------------------------------------------------------------- hooks

  async imagesChanged(s: Store, tenantId: string): Promise<void> {
    // The first image creates the tenant's image repository.
    await this.#converge(s, tenantId, 'image', TENANT_SCOPE, { create: true });
  }

  async groupChanged(s: Store, tenantId: string, groupId: string): Promise<void> {
    await this.#converge(s, tenantId, 'director', groupId, { onlyIfPublished: true });
  }

  async deviceJoined(s: Store, tenantId: string, groupId: string): Promise<void> {
    await this.#converge(s, tenantId, 'director', groupId, { onlyIfPublished: true, force: 'targets' });
  }

  async runtimeChanged(s: Store): Promise<void> {
    // Runtime releases are targets of every tenant's image repository and named by the
    // director of every group whose feed they are on. In tenant order, so two such changes at
    // once take the repository locks in the same order.
    for (const { tenantId, repository } of await s.platform().tufRepositories.list()) {
      if (repository === 'image') await this.#converge(s, tenantId, 'image', TENANT_SCOPE, {});
      else
        for (const group of await s.forTenant(tenantId).tuf.directorScopes())
          await this.#converge(s, tenantId, 'director', group, {});
    }
  }

  async groupDeleted(s: Store, tenantId: string, groupId: string): Promise<void> {
    await s.forTenant(tenantId).tuf.dropScope(groupId);
    this.#invalidate(tenantId);
  }

  // ---------------------------------------------------------------- reads (devices, operators)

  /** A metadata file of `repo` for `scope` (the device's group for the director). */
  async metadata(
    tenantId: string,
    repo: TufRepositoryName,
    scope: string,
    request: MetadataRequest,
  ): Promise<ServedFile> {
    let state = await this.#current(tenantId, repo, scope, false);
    if (request.role === 'timestamp') return state.timestamp;
    if (request.version === null) return state.root;
    const head =
      request.role === 'root'
        ? state.root.version
        : request.role === 'snapshot'
          ? state.snapshotVersion
          : state.targetsVersion;
    // Devices ask for root N+1 on every refresh: answered from memory. A snapshot or targets
    // version above what this process knows may have been published by another one: re-read.
    if (request.version > head && request.role !== 'root') {
      state = await this.#current(tenantId, repo, scope, true);
    }
    const fileScope = request.role === 'root' ? TENANT_SCOPE : scope;
    const key = `${tenantId}|${repo}|${fileScope}|${request.role}|${request.version}`;
    const hit = this.#files.get(key);
    if (hit) return hit;
    const body = await this.#store
      .forTenant(tenantId)
      .tuf.body(repo, fileScope, request.role, request.version);
    if (body === undefined) throw new HeptadError('TUF_METADATA_NOT_FOUND', 'no such metadata version');
    const file = served(body);
    if (this.#files.size >= FILE_CACHE_MAX) this.#files.delete(this.#files.keys().next().value as string);
    this.#files.set(key, file);
    return file;
  }

  /** Where the bytes of an image-repository target are: only what the current targets name. */
  async target(tenantId: string, path: string, sha256: string): Promise<TargetLocation> {
    for (const fresh of [false, true]) {
      const state = await this.#current(tenantId, 'image', TENANT_SCOPE, fresh);
      const t = state.targets?.get(path);
      if (t && t.sha256 === sha256) return t;
    }
    throw new HeptadError('TUF_TARGET_NOT_FOUND', 'no such target');
  }

  // ---------------------------------------------------------------- rotation and re-signing

  /**
   * Replaces the key of `role` in each repository: a new root version lists it (signed by the
   * old root keys and, when root itself rotates, by the new one too — TUF 5.3.4), then the
   * role's metadata is signed again with the new key, for every group on the director.
   */
  async rotate(
    ctx: ChangeContext,
    tenantId: string,
    role: TufRoleName,
    repositories: readonly TufRepositoryName[],
  ): Promise<RotationResult[]> {
    const results = await this.#store.transaction(async (s) => {
      const out: RotationResult[] = [];
      const tuf = s.forTenant(tenantId).tuf;
      for (const repo of repositories) {
        await this.#converge(s, tenantId, repo, TENANT_SCOPE, { create: true });
        const now = this.#clock();
        await tuf.lock(repo, now.toISOString());
        const rows = await tuf.keys(repo);
        const active = this.#activeKeys(tenantId, rows);
        const fresh = await this.#createKey(tuf, tenantId, repo, role, now);
        for (const old of rows.filter((r) => r.role === role && r.retired_at === null))
          await tuf.retireKey(old.id, now.toISOString());
        const keys: ActiveKeys = { ...active, [role]: [fresh] };
        const heads = await tuf.heads(repo, TENANT_SCOPE);
        const rootVersion = (heads.root?.version ?? 0) + 1;
        await this.#writeRoot(tuf, repo, rootVersion, keys, role === 'root' ? [fresh] : [], active, now);
        if (role !== 'root') {
          if (repo === 'image') await this.#converge(s, tenantId, repo, TENANT_SCOPE, { force: role, keys });
          else
            for (const group of await tuf.directorScopes())
              await this.#converge(s, tenantId, repo, group, { force: role, keys });
        }
        await s.forTenant(tenantId).audit.record(ctx, {
          tenantId,
          action: 'tuf.key-rotated',
          targetType: 'tuf-repository',
          targetId: repo,
          detail: { role, keyId: fresh.keyId, rootVersion },
        });
        out.push({ repository: repo, role, keyId: fresh.keyId, rootVersion });
      }
      return out;
    });
    this.#invalidate(tenantId);
    return results;
  }

  /**
   * Re-signs every file that is due, in every tenant (the periodic job of `heptad serve`; reads
   * also re-sign lazily). Safe with several processes: each write locks and re-checks.
   */
  async renewAll(): Promise<number> {
    let renewed = 0;
    for (const { tenantId, repository } of await this.#store.platform().tufRepositories.list()) {
      const tuf = this.#store.forTenant(tenantId).tuf;
      const scopes =
        repository === 'image' ? [TENANT_SCOPE] : [TENANT_SCOPE, ...(await tuf.directorScopes())];
      for (const scope of scopes) {
        try {
          const rootOnly = repository === 'director' && scope === TENANT_SCOPE;
          if (!this.#due(await tuf.heads(repository, scope), rootOnly)) continue;
          const changed = await this.#store.transaction((s) =>
            this.#converge(s, tenantId, repository, scope, {}),
          );
          if (changed) renewed += 1;
        } catch (err) {
          this.#logger?.error({ err, tenantId, repository, scope }, 'TUF re-signing failed');
        }
      }
    }
    return renewed;
  }

  /** Runs renewAll every `intervalMs` until stop(). */
  start(intervalMs: number): void {
    this.#timer = setInterval(() => {
      this.renewAll().catch((err) => this.#logger?.error({ err }, 'TUF re-signing failed'));
    }, intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  // ---------------------------------------------------------------- internals

  #lifetimeMs(role: TufRoleName): number {
    return this.#options.expiryDays[role] * DAY_MS;
  }

  #renewAt(head: MetadataHead): number {
    return Date.parse(head.expiresAt) - this.#lifetimeMs(head.role) * this.#options.renewFraction;
  }

  /** Something is missing or due for re-signing (`rootOnly`: the director's tenant scope). */
  #due(heads: Partial<Record<TufRoleName, MetadataHead>>, rootOnly: boolean): boolean {
    const now = this.#clock().getTime();
    const roles: readonly TufRoleName[] = rootOnly ? ['root'] : TUF_ROLES;
    return roles.some((r) => {
      const h = heads[r];
      return h === undefined || this.#renewAt(h) <= now;
    });
  }

  #invalidate(tenantId: string): void {
    for (const key of this.#state.keys()) if (key.startsWith(`${tenantId}|`)) this.#state.delete(key);
  }

  /** The scope's state from memory, or read (and if needed created or re-signed) now. */
  async #current(
    tenantId: string,
    repo: TufRepositoryName,
    scope: string,
    fresh: boolean,
  ): Promise<ScopeState> {
    const key = `${tenantId}|${repo}|${scope}`;
    const now = this.#clock().getTime();
    const hit = this.#state.get(key);
    if (hit && !fresh && now < hit.until && now < hit.renewAt) return hit;
    let pending = this.#loading.get(key);
    if (!pending) {
      pending = this.#load(tenantId, repo, scope).finally(() => this.#loading.delete(key));
      this.#loading.set(key, pending);
    }
    const state = await pending;
    if (this.#state.size >= STATE_CACHE_MAX) this.#state.clear();
    this.#state.set(key, state);
    return state;
  }

  async #load(tenantId: string, repo: TufRepositoryName, scope: string): Promise<ScopeState> {
    const tuf = this.#store.forTenant(tenantId).tuf;
    let heads = await tuf.heads(repo, scope);
    if (this.#due(heads, false)) {
      // First request, or something is about to expire: create or re-sign now.
      await this.#store.transaction((s) => this.#converge(s, tenantId, repo, scope, { create: true }));
      heads = await tuf.heads(repo, scope);
    }
    const { root, timestamp, snapshot, targets } = heads;
    if (!root || !timestamp || !snapshot || !targets)
      throw new HeptadError('TUF_METADATA_NOT_FOUND', 'this repository has no metadata for the device');
    const [rootBody, timestampBody] = await Promise.all([
      tuf.body(repo, TENANT_SCOPE, 'root', root.version),
      tuf.body(repo, scope, 'timestamp', timestamp.version),
    ]);
    if (rootBody === undefined || timestampBody === undefined)
      throw new HeptadError('TUF_METADATA_NOT_FOUND', 'metadata changed while being read; ask again');
    let index: ReadonlyMap<string, TargetLocation> | null = null;
    if (repo === 'image') {
      const indexKey = `${tenantId}|${targets.version}`;
      index = this.#targetIndexes.get(indexKey) ?? null;
      if (!index) {
        const body = await tuf.body(repo, scope, 'targets', targets.version);
        if (body === undefined)
          throw new HeptadError('TUF_METADATA_NOT_FOUND', 'metadata changed; ask again');
        const parsed = JSON.parse(body) as {
          signed: { targets: Record<string, { length: number; hashes: { sha256: string } }> };
        };
        index = new Map(
          Object.entries(parsed.signed.targets).map(([p, t]) => [
            p,
            { sha256: t.hashes.sha256, length: t.length },
          ]),
        );
        if (this.#targetIndexes.size >= 1000) this.#targetIndexes.clear();
        this.#targetIndexes.set(indexKey, index);
      }
    }
    const now = this.#clock().getTime();
    return {
      until: now + this.#options.cacheMs,
      renewAt: Math.min(...[root, timestamp, snapshot, targets].map((h) => this.#renewAt(h))),
      timestamp: served(timestampBody),
      root: { ...served(rootBody), version: root.version },
      snapshotVersion: snapshot.version,
      targetsVersion: targets.version,
      targets: index,
    };
  }

  /**
   * Makes what is published for one scope match what it must name, and not near expiry:
   * a new root version when root is due; new targets + snapshot + timestamp when the target set
   * changed (or targets is due or forced), else new snapshot + timestamp, else a new timestamp.
   * Runs inside the caller's transaction, under the repository lock. Returns whether it wrote.
   */
  async #converge(
    s: Store,
    tenantId: string,
    repo: TufRepositoryName,
    scope: string,
    opts: {
      create?: boolean;
      onlyIfPublished?: boolean;
      force?: TufRoleName;
      keys?: ActiveKeys;
    },
  ): Promise<boolean> {
    const tuf = s.forTenant(tenantId).tuf;
    if (!opts.create && !(await tuf.hasRepository(repo))) return false;
    const now = this.#clock();
    await tuf.lock(repo, now.toISOString());
    const heads = await tuf.heads(repo, scope);
    if (opts.onlyIfPublished && heads.timestamp === undefined) return false;
    let changed = false;
    let keys = opts.keys;
    if (!keys) {
      const rows = await tuf.keys(repo);
      if (rows.length === 0) {
        const created = {} as ActiveKeys;
        for (const role of TUF_ROLES) created[role] = [await this.#createKey(tuf, tenantId, repo, role, now)];
        keys = created;
      } else keys = this.#activeKeys(tenantId, rows);
    }
    if (!heads.root || this.#renewAt(heads.root) <= now.getTime()) {
      await this.#writeRoot(tuf, repo, (heads.root?.version ?? 0) + 1, keys, [], keys, now);
      changed = true;
    }
    if (repo === 'director' && scope === TENANT_SCOPE) {
      if (changed) this.#invalidate(tenantId);
      return changed;
    }
    const desired =
      repo === 'image'
        ? await this.#imageTargets(s, tenantId)
        : await this.#directorTargets(s, tenantId, scope);
    if (desired === null) return changed;
    const digest = targetSetDigest(desired);
    const at = now.getTime();
    const isDue = (h: MetadataHead | undefined) => h === undefined || this.#renewAt(h) <= at;
    const forced = opts.force && opts.force !== 'root' ? LEVEL_OF[opts.force] : 0;
    let level: Level = 0;
    if (heads.targets?.contentDigest !== digest || isDue(heads.targets) || forced === 3) level = 3;
    else if (isDue(heads.snapshot) || forced === 2) level = 2;
    else if (isDue(heads.timestamp) || forced === 1) level = 1;
    if (level === 0) {
      if (changed) this.#invalidate(tenantId);
      return changed;
    }
    const version = await tuf.nextVersion(repo);
    const expires = (role: TufRoleName) => new Date(at + this.#lifetimeMs(role));
    const signer = (role: TufRoleName) => {
      const k = keys[role][0];
      if (!k) throw new HeptadError('INTERNAL_ERROR', `no ${role} key`);
      return k;
    };
    const stored = async (role: 'targets' | 'snapshot', head: MetadataHead | undefined) => {
      const body = head && (await tuf.body(repo, scope, role, head.version));
      if (!head || body === undefined) throw new HeptadError('INTERNAL_ERROR', `${role} metadata missing`);
      return { version: head.version, bytes: Buffer.from(body) };
    };
    const written: Array<SignedFile & { contentDigest: string | null }> = [];
    const targetsFile =
      level === 3
        ? signTargets({ version, expires: expires('targets'), targets: desired, signer: signer('targets') })
        : await stored('targets', heads.targets);
    if (level === 3) written.push({ ...(targetsFile as SignedFile), contentDigest: digest });
    const snapshotFile =
      level >= 2
        ? signSnapshot({
            version,
            expires: expires('snapshot'),
            targets: targetsFile,
            signer: signer('snapshot'),
          })
        : await stored('snapshot', heads.snapshot);
    if (level >= 2) written.push({ ...(snapshotFile as SignedFile), contentDigest: null });
    written.push({
      ...signTimestamp({
        version,
        expires: expires('timestamp'),
        snapshot: snapshotFile,
        signer: signer('timestamp'),
      }),
      contentDigest: null,
    });
    // Targets first, then snapshot, then timestamp: all in this transaction in any case.
    for (const f of written) {
      await tuf.insert({
        repository: repo,
        scope,
        role: f.role,
        version: f.version,
        expires_at: f.expires,
        content_digest: f.contentDigest,
        body: f.bytes.toString(),
        created_at: now.toISOString(),
      });
    }
    this.#invalidate(tenantId);
    return true;
  }

  async #writeRoot(
    tuf: TufStore,
    repo: TufRepositoryName,
    version: number,
    keys: ActiveKeys,
    extraSigners: readonly TufSigner[],
    signingKeys: ActiveKeys,
    now: Date,
  ): Promise<void> {
    const pub = (list: readonly TufSigner[]): PublicTufKey[] =>
      list.map((k) => ({ keyId: k.keyId, publicKeyPem: k.publicKeyPem }));
    const file = signRoot({
      version,
      expires: new Date(now.getTime() + this.#lifetimeMs('root')),
      keys: {
        root: pub(keys.root),
        targets: pub(keys.targets),
        snapshot: pub(keys.snapshot),
        timestamp: pub(keys.timestamp),
      },
      signers: [...signingKeys.root, ...extraSigners],
    });
    await tuf.insert({
      repository: repo,
      scope: TENANT_SCOPE,
      role: 'root',
      version,
      expires_at: file.expires,
      content_digest: null,
      body: file.bytes.toString(),
      created_at: now.toISOString(),
    });
  }

  async #createKey(
    tuf: TufStore,
    tenantId: string,
    repo: TufRepositoryName,
    role: TufRoleName,
    now: Date,
  ): Promise<TufSigner> {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const id = randomUUID();
    const publicKeyPem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
    const keyId = tufKeyIdOf(publicKeyPem);
    await tuf.insertKey({
      id,
      repository: repo,
      role,
      key_id: keyId,
      public_key_pem: publicKeyPem,
      key_sealed: this.#keys
        .seal(privateKey.export({ format: 'der', type: 'pkcs8' }), sealLabel(tenantId, id))
        .toString('base64'),
      created_at: now.toISOString(),
      retired_at: null,
    });
    this.#privateKeys.set(id, privateKey);
    return { keyId, publicKeyPem, privateKey };
  }

  #activeKeys(tenantId: string, rows: readonly TufKeysTable[]): ActiveKeys {
    const out: ActiveKeys = { root: [], targets: [], snapshot: [], timestamp: [] };
    for (const r of rows) {
      if (r.retired_at !== null) continue;
      let privateKey = this.#privateKeys.get(r.id);
      if (!privateKey) {
        privateKey = createPrivateKey({
          key: this.#keys.open(Buffer.from(r.key_sealed, 'base64'), sealLabel(tenantId, r.id)),
          format: 'der',
          type: 'pkcs8',
        });
        this.#privateKeys.set(r.id, privateKey);
      }
      out[r.role].push({ keyId: r.key_id, publicKeyPem: r.public_key_pem, privateKey });
    }
    return out;
  }

  /** Every image of the tenant and every runtime release not withdrawn. */
  async #imageTargets(s: Store, tenantId: string): Promise<TargetEntry[]> {
    const images = await s.forTenant(tenantId).images.files();
    const out: TargetEntry[] = images.map((i) => this.#appTarget(i));
    for (const r of await new RuntimeReleaseStore(s.db).available()) out.push(this.#runtimeTarget(r));
    return out;
  }

  /**
   * What the group's devices must run: the images of its current deployment (none under
   * `no-app-updates`) and the runtime release its feed offers. null: the group is gone.
   */
  async #directorTargets(s: Store, tenantId: string, groupId: string): Promise<TargetEntry[] | null> {
    const scope = s.forTenant(tenantId);
    let group: Awaited<ReturnType<typeof scope.products.getGroup>>;
    try {
      group = await scope.products.getGroup(groupId);
    } catch {
      return null;
    }
    const out: TargetEntry[] = [];
    if (group.updatePolicy !== 'no-app-updates') {
      const ids = await scope.deployments.currentImageIds(group.id);
      for (const i of await scope.images.files(ids)) out.push(this.#appTarget(i));
    }
    const releases = new RuntimeReleaseStore(s.db);
    const offered = await releases.offered(group.osFeed);
    if (offered) {
      const { sha256 } = await releases.blobOf(offered.digest);
      out.push(this.#runtimeTarget({ ...offered, blobSha256: sha256 }));
    }
    return out;
  }

  #appTarget(i: {
    id: string;
    componentId: string;
    name: string;
    version: string;
    securityVersion: number;
    size: number;
    blobSha256: string;
  }): TargetEntry {
    const custom = {
      componentId: i.componentId,
      imageId: i.id,
      name: i.name,
      version: i.version,
      securityVersion: i.securityVersion,
      type: 'application' as const,
    };
    return { path: targetPathOf(custom), length: i.size, sha256: i.blobSha256, custom };
  }

  #runtimeTarget(r: {
    version: string;
    securityVersion: number;
    size: number;
    blobSha256: string;
  }): TargetEntry {
    let m = this.#runtimeManifests.get(r.blobSha256);
    if (!m) {
      // Runtime releases do not record their image and component ids: read them once from the
      // (immutable, verified at publish) package.
      const bytes = this.#blobs.get(r.blobSha256);
      if (!bytes)
        throw new HeptadError('INTERNAL_ERROR', `the file of runtime release ${r.version} is missing`);
      const manifest = readManifestUnverified(bytes);
      m = { imageId: manifest.imageId, componentId: manifest.componentId, name: manifest.name };
      this.#runtimeManifests.set(r.blobSha256, m);
    }
    const custom = {
      componentId: m.componentId,
      imageId: m.imageId,
      name: m.name,
      version: r.version,
      securityVersion: r.securityVersion,
      type: 'runtime' as const,
    };
    return { path: targetPathOf(custom), length: r.size, sha256: r.blobSha256, custom };
  }
}
