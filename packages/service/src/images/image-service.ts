import {
  addSignature,
  canonicalJson,
  HeptadError,
  parseAppManifest,
  readManifestUnverified,
  type VerifiedPackage,
  verifyPackage,
} from '@heptad/protocol';
import type { ChangeContext } from '../context.ts';
import type { Store } from '../store/store.ts';
import type { UpdateMetadataHooks } from '../tuf/tuf-service.ts';
import type { BlobStore } from './blob-store.ts';
import type { TenantImageKeys } from './image-keys.ts';
import type { Image, ImageDetail } from './image-store.ts';

/** The largest image package an upload may carry (the package format's own limit). */
export const MAX_IMAGE_BYTES = 64 * 1024 * 1024;

/**
 * Image upload: validate everything, re-sign with the tenant's production key, store the file in
 * the blob store and its record (with an audit record) in one transaction.
 */
export class ImageService {
  readonly #store: Store;
  readonly #keys: TenantImageKeys;
  readonly #blobs: BlobStore;
  readonly #updates: UpdateMetadataHooks;

  constructor(store: Store, keys: TenantImageKeys, blobs: BlobStore, updates: UpdateMetadataHooks) {
    this.#store = store;
    this.#keys = keys;
    this.#blobs = blobs;
    this.#updates = updates;
  }

  /**
   * Returns the image and whether it was created (false: the same package was uploaded before).
   * Refusals: any IMAGE_* code of the package format (structure, manifest, file digests, paths,
   * limits, a package with no signature at all), IMAGE_TYPE_NOT_ALLOWED (a runtime package: those
   * are the operator's), IMAGE_COMPONENT_CONFLICT (the component id is another app's),
   * IMAGE_EXISTS (this image id with other contents).
   */
  async add(
    ctx: ChangeContext,
    tenantId: string,
    bytes: Buffer,
  ): Promise<{ image: Image; created: boolean }> {
    // Cheap look first (no trust implied): a runtime package is refused before any signing.
    const manifest = readManifestUnverified(bytes);
    if (manifest.type !== 'application')
      throw new HeptadError(
        'IMAGE_TYPE_NOT_ALLOWED',
        'tenants upload applications; runtimes come from the platform',
      );
    const signer = await this.#keys.signerFor(tenantId);
    const trusted = new Map([[signer.keyId, signer.publicKey]]);
    let signed: Buffer;
    let pkg: VerifiedPackage;
    try {
      // Already production-signed (an image downloaded from this tenant, uploaded again): as is.
      pkg = verifyPackage(bytes, trusted);
      signed = bytes;
    } catch {
      // addSignature checks the structure, the manifest and every file digest before signing;
      // verifyPackage then checks the whole package under the new signature, as a device will.
      signed = addSignature(bytes, signer.privateKey);
      pkg = verifyPackage(signed, trusted);
    }
    const m = pkg.manifest;
    // The app manifest is what the device will enforce: it must be valid and agree with the
    // package (ComponentId, Name, EntryPoint among its files; DeviceAuthentication this tenant).
    parseAppManifest(m.appManifest, {
      tenantId,
      image: { componentId: m.componentId, name: m.name, entryPoint: m.entryPoint },
      files: pkg.files.map((f) => f.path),
    });
    const scope = this.#store.forTenant(tenantId);
    const existing = await scope.images.find(m.imageId);
    if (existing) {
      if (existing.digest === pkg.digest) return { image: existing, created: false };
      throw new HeptadError('IMAGE_EXISTS', `image ${m.imageId} exists with other contents`);
    }
    const owner = await scope.images.componentName(m.componentId);
    if (owner !== undefined && owner !== m.name) {
      throw new HeptadError('IMAGE_COMPONENT_CONFLICT', `component ${m.componentId} belongs to "${owner}"`, {
        detail: { componentId: m.componentId },
      });
    }
    // The blob first: a crash before the commit leaves an unreferenced file, never a record
    // without its bytes.
    const blob = this.#blobs.put(signed);
    // The image repository names the new image in the same transaction (docs/updates.md).
    const image = await this.#store.transaction(async (s) => {
      const added = await s.forTenant(tenantId).images.insert(ctx, {
        id: m.imageId,
        component_id: m.componentId,
        name: m.name,
        version: m.version,
        security_version: m.securityVersion,
        type: m.type,
        digest: pkg.digest,
        blob_sha256: blob,
        size: signed.length,
        app_manifest: m.appManifest === undefined ? null : canonicalJson(m.appManifest),
      });
      await this.#updates.imagesChanged(s, tenantId);
      return added;
    });
    return { image, created: true };
  }

  async content(tenantId: string, id: string): Promise<{ bytes: Buffer; digest: string }> {
    const blob = await this.#store.forTenant(tenantId).images.blobOf(id);
    const bytes = this.#blobs.get(blob.sha256);
    if (!bytes) throw new HeptadError('INTERNAL_ERROR', `the file of image ${id} is missing`);
    return { bytes, digest: blob.digest };
  }

  get(tenantId: string, id: string): Promise<ImageDetail> {
    return this.#store.forTenant(tenantId).images.get(id);
  }

  /** The tenant's production image-signing public key, created on first need. */
  async signingKey(tenantId: string): Promise<{ keyId: string; publicKeyPem: string }> {
    const s = await this.#keys.signerFor(tenantId);
    return { keyId: s.keyId, publicKeyPem: s.publicKey.export({ format: 'pem', type: 'spki' }).toString() };
  }
}
