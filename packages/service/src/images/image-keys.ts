import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { keyIdOf } from '@heptad/protocol';
import type { Kysely } from 'kysely';
import type { KeyStore } from '../keys/key-store.ts';
import type { Database } from '../store/schema.ts';

export interface ImageSigner {
  readonly keyId: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

const sealLabel = (tenantId: string) => `tenant-image-key:${tenantId}`;

/**
 * Each tenant's production image-signing key (ECDSA P-256), created on first need, its private
 * key sealed under the master key. Devices of the tenant trust it; the service re-signs every
 * uploaded image with it, as Azure Sphere's AS3 did. The private key never leaves the service.
 */
export class TenantImageKeys {
  readonly #db: Kysely<Database>;
  readonly #keys: KeyStore;
  readonly #clock: () => Date;
  readonly #cache = new Map<string, ImageSigner>();

  constructor(db: Kysely<Database>, keys: KeyStore, clock: () => Date) {
    this.#db = db;
    this.#keys = keys;
    this.#clock = clock;
  }

  async signerFor(tenantId: string): Promise<ImageSigner> {
    const cached = this.#cache.get(tenantId);
    if (cached) return cached;
    let row = await this.#read(tenantId);
    if (!row) {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
      // Two first uploads at once: one insert wins, the other reads the winner's key.
      await this.#db
        .insertInto('tenant_image_keys')
        .values({
          tenant_id: tenantId,
          key_id: keyIdOf(publicKey),
          public_key_pem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
          key_sealed: this.#keys.seal(pkcs8, sealLabel(tenantId)).toString('base64'),
          created_at: this.#clock().toISOString(),
        })
        .onConflict((oc) => oc.column('tenant_id').doNothing())
        .execute();
      row = await this.#read(tenantId);
      if (!row) throw new Error('tenant image key missing after insert');
    }
    const privateKey = createPrivateKey({
      key: this.#keys.open(Buffer.from(row.key_sealed, 'base64'), sealLabel(tenantId)),
      format: 'der',
      type: 'pkcs8',
    });
    const signer = { keyId: row.key_id, privateKey, publicKey: createPublicKey(row.public_key_pem) };
    this.#cache.set(tenantId, signer);
    return signer;
  }

  #read(tenantId: string) {
    return this.#db
      .selectFrom('tenant_image_keys')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
  }
}
