import { createPublicKey, type KeyObject } from 'node:crypto';
import { HeptadError, keyIdOf } from '@heptad/protocol';
import type { Kysely } from 'kysely';
import { mapUnique } from '../store/errors.ts';
import type { Database, RuntimeFeed, RuntimeReleasesTable } from '../store/schema.ts';

export interface RuntimeRelease {
  digest: string;
  version: string;
  securityVersion: number;
  feed: RuntimeFeed;
  withdrawn: boolean;
  size: number;
  publishedAt: string;
  promotedAt: string | null;
  withdrawnAt: string | null;
}

export const FEEDS: readonly RuntimeFeed[] = ['retail-eval', 'retail'];
/** Which release feeds a device group's feed takes: evaluation groups get retail releases too. */
const FEEDS_SEEN: Record<RuntimeFeed, readonly RuntimeFeed[]> = {
  retail: ['retail'],
  'retail-eval': ['retail-eval', 'retail'],
};

const DIGEST = /^[0-9a-f]{64}$/;

const toRelease = (r: RuntimeReleasesTable): RuntimeRelease => ({
  digest: r.digest,
  version: r.version,
  securityVersion: Number(r.security_version),
  feed: r.feed,
  withdrawn: r.withdrawn_at !== null,
  size: Number(r.size),
  publishedAt: r.published_at,
  promotedAt: r.promoted_at,
  withdrawnAt: r.withdrawn_at,
});

/** Platform-wide: runtime-signing keys and runtime releases (the operator's). */
export class RuntimeReleaseStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async addSigner(
    pem: string,
    now: string,
  ): Promise<{ keyId: string; publicKeyPem: string; createdAt: string }> {
    // createPublicKey would derive a public key from a private one: refuse private key material
    // outright, so a mistaken file never registers (nor lands in the database).
    if (/PRIVATE KEY/.test(pem))
      throw new HeptadError('RUNTIME_SIGNER_INVALID', 'that is a private key; send the public key');
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch (cause) {
      throw new HeptadError('RUNTIME_SIGNER_INVALID', 'not a PEM public key', { cause });
    }
    let keyId: string;
    try {
      keyId = keyIdOf(key);
    } catch (cause) {
      throw new HeptadError('RUNTIME_SIGNER_INVALID', 'runtime-signing keys are ECDSA P-256', { cause });
    }
    const publicKeyPem = key.export({ format: 'pem', type: 'spki' }).toString();
    await mapUnique('RUNTIME_SIGNER_EXISTS', () =>
      this.#db
        .insertInto('runtime_signers')
        .values({ key_id: keyId, public_key_pem: publicKeyPem, created_at: now })
        .execute(),
    );
    return { keyId, publicKeyPem, createdAt: now };
  }

  async signers(): Promise<Array<{ keyId: string; publicKeyPem: string; createdAt: string }>> {
    const rows = await this.#db.selectFrom('runtime_signers').selectAll().orderBy('created_at').execute();
    return rows.map((r) => ({ keyId: r.key_id, publicKeyPem: r.public_key_pem, createdAt: r.created_at }));
  }

  async trustedKeys(): Promise<Map<string, KeyObject>> {
    return new Map((await this.signers()).map((s) => [s.keyId, createPublicKey(s.publicKeyPem)]));
  }

  async insert(row: RuntimeReleasesTable): Promise<RuntimeRelease> {
    await mapUnique('RUNTIME_RELEASE_EXISTS', () =>
      this.#db.insertInto('runtime_releases').values(row).execute(),
    );
    return toRelease(row);
  }

  async #row(ref: string): Promise<RuntimeReleasesTable> {
    const r = await this.#db
      .selectFrom('runtime_releases')
      .selectAll()
      .where(DIGEST.test(ref) ? 'digest' : 'version', '=', ref)
      .executeTakeFirst();
    if (!r) throw new HeptadError('RUNTIME_RELEASE_NOT_FOUND');
    return r;
  }

  async get(ref: string): Promise<RuntimeRelease> {
    return toRelease(await this.#row(ref));
  }

  async blobOf(ref: string): Promise<{ sha256: string; digest: string }> {
    const r = await this.#row(ref);
    return { sha256: r.blob_sha256, digest: r.digest };
  }

  async list(): Promise<RuntimeRelease[]> {
    const rows = await this.#db
      .selectFrom('runtime_releases')
      .selectAll()
      .orderBy('published_at', 'desc')
      .execute();
    return rows.map(toRelease);
  }

  /** Moves a release from retail-eval to retail. */
  async promote(ref: string, now: string): Promise<RuntimeRelease> {
    const r = await this.#row(ref);
    if (r.withdrawn_at !== null) throw new HeptadError('RUNTIME_RELEASE_WITHDRAWN');
    if (r.feed === 'retail') throw new HeptadError('RUNTIME_RELEASE_ALREADY_RETAIL');
    await this.#db
      .updateTable('runtime_releases')
      .set({ feed: 'retail', promoted_at: now })
      .where('digest', '=', r.digest)
      .execute();
    return toRelease({ ...r, feed: 'retail', promoted_at: now });
  }

  /** Never offered again (devices on it move to the newest release that is not withdrawn). */
  async withdraw(ref: string, now: string): Promise<RuntimeRelease> {
    const r = await this.#row(ref);
    if (r.withdrawn_at !== null) throw new HeptadError('RUNTIME_RELEASE_WITHDRAWN');
    await this.#db
      .updateTable('runtime_releases')
      .set({ withdrawn_at: now })
      .where('digest', '=', r.digest)
      .execute();
    return toRelease({ ...r, withdrawn_at: now });
  }

  /** Releases not withdrawn, with their file (blob name): the update metadata names each as a target. */
  async available(): Promise<Array<RuntimeRelease & { blobSha256: string }>> {
    const rows = await this.#db
      .selectFrom('runtime_releases')
      .selectAll()
      .where('withdrawn_at', 'is', null)
      .orderBy('digest')
      .execute();
    return rows.map((r) => ({ ...toRelease(r), blobSha256: r.blob_sha256 }));
  }

  /** The release a device group on `feed` is offered: the highest security version, then the newest. */
  async offered(feed: RuntimeFeed): Promise<RuntimeRelease | undefined> {
    const r = await this.#db
      .selectFrom('runtime_releases')
      .selectAll()
      .where('feed', 'in', [...FEEDS_SEEN[feed]])
      .where('withdrawn_at', 'is', null)
      .orderBy('security_version', 'desc')
      .orderBy('published_at', 'desc')
      .executeTakeFirst();
    return r ? toRelease(r) : undefined;
  }
}
