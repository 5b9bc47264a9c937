import { HeptadError } from '@heptad/protocol';
import { type Kysely, sql } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';

export type Dialect = 'sqlite' | 'postgres';

/**
 * One ordered list of migrations for both dialects. A migration is never edited once released;
 * schema changes add a new entry. Where the dialects differ (auto-increment) the migration asks.
 */
function migrations(dialect: Dialect): Record<string, Migration> {
  return {
    '0001_core': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('tenants')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull().unique())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('users')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text', (c) => c.references('tenants.id'))
          .addColumn('email', 'text', (c) => c.notNull().unique())
          .addColumn('role', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('users_tenant').on('users').column('tenant_id').execute();
        await db.schema
          .createTable('api_tokens')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
          .addColumn('token_hash', 'text', (c) => c.notNull().unique())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text')
          .execute();
        await db.schema
          .createTable('products')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('description', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addUniqueConstraint('products_tenant_name', ['tenant_id', 'name'])
          .execute();
        await db.schema
          .createTable('device_groups')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('product_id', 'text', (c) => c.notNull().references('products.id'))
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('description', 'text', (c) => c.notNull())
          .addColumn('os_feed', 'text', (c) => c.notNull())
          .addColumn('update_policy', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addUniqueConstraint('device_groups_product_name', ['product_id', 'name'])
          .execute();
        await db.schema.createIndex('device_groups_tenant').on('device_groups').column('tenant_id').execute();
        await db.schema
          .createTable('devices')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('public_key_pem', 'text', (c) => c.notNull())
          .addColumn('rot_kind', 'text', (c) => c.notNull())
          .addColumn('registered_at', 'text', (c) => c.notNull())
          .addColumn('tenant_id', 'text', (c) => c.references('tenants.id'))
          .addColumn('device_group_id', 'text', (c) => c.references('device_groups.id'))
          .addColumn('claimed_at', 'text')
          .execute();
        await db.schema.createIndex('devices_tenant').on('devices').columns(['tenant_id', 'id']).execute();
        await db.schema.createIndex('devices_group').on('devices').column('device_group_id').execute();
        await db.schema
          .createTable('audit_events')
          .addColumn('seq', dialect === 'postgres' ? 'bigserial' : 'integer', (c) =>
            dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
          )
          .addColumn('id', 'text', (c) => c.notNull().unique())
          .addColumn('tenant_id', 'text')
          .addColumn('actor_id', 'text', (c) => c.notNull())
          .addColumn('actor_role', 'text', (c) => c.notNull())
          .addColumn('action', 'text', (c) => c.notNull())
          .addColumn('target_type', 'text', (c) => c.notNull())
          .addColumn('target_id', 'text', (c) => c.notNull())
          .addColumn('request_id', 'text', (c) => c.notNull())
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('detail', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex('audit_events_tenant')
          .on('audit_events')
          .columns(['tenant_id', 'seq'])
          .execute();
      },
    },
    '0002_attestation_pki': {
      async up(db: Kysely<unknown>) {
        // Devices: the register their boot chain measures into, TPM key material, quarantine.
        await db.schema
          .alterTable('devices')
          .addColumn('measurement_pcr', 'integer', (c) => c.notNull().defaultTo(15))
          .execute();
        await db.schema.alterTable('devices').addColumn('tpm_public', 'text').execute();
        await db.schema.alterTable('devices').addColumn('quarantined_at', 'text').execute();
        await db.schema.alterTable('devices').addColumn('quarantine_reason', 'text').execute();
        await db.schema.alterTable('devices').addColumn('last_attested_at', 'text').execute();
        await db.schema
          .createTable('tenant_cas')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('generation', 'integer', (c) => c.notNull())
          .addColumn('cert_pem', 'text', (c) => c.notNull())
          .addColumn('key_sealed', 'text', (c) => c.notNull())
          .addColumn('not_before', 'text', (c) => c.notNull())
          .addColumn('not_after', 'text', (c) => c.notNull())
          .addColumn('active_from', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addUniqueConstraint('tenant_cas_generation', ['tenant_id', 'kind', 'generation'])
          .execute();
        await db.schema
          .createTable('used_nonces')
          .addColumn('nonce', 'text', (c) => c.primaryKey())
          .addColumn('expires_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('used_nonces_expiry').on('used_nonces').column('expires_at').execute();
        await db.schema
          .createTable('device_certificates')
          .addColumn('serial', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text', (c) => c.notNull())
          .addColumn('device_id', 'text', (c) => c.notNull())
          .addColumn('issuing_ca_id', 'text', (c) => c.notNull())
          .addColumn('spki_sha256', 'text', (c) => c.notNull())
          .addColumn('rot_kind', 'text', (c) => c.notNull())
          .addColumn('not_before', 'text', (c) => c.notNull())
          .addColumn('not_after', 'text', (c) => c.notNull())
          .addColumn('revoked_at', 'text')
          .execute();
        await db.schema
          .createIndex('device_certificates_device')
          .on('device_certificates')
          .columns(['tenant_id', 'device_id'])
          .execute();
        await db.schema
          .createIndex('device_certificates_key')
          .on('device_certificates')
          .column('spki_sha256')
          .execute();
        await db.schema
          .createTable('security_events')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text')
          .addColumn('device_id', 'text', (c) => c.notNull())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('reason', 'text', (c) => c.notNull())
          .addColumn('evidence_digest', 'text')
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('last_at', 'text', (c) => c.notNull())
          .addColumn('count', 'integer', (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex('security_events_device')
          .on('security_events')
          .columns(['device_id', 'reason', 'last_at'])
          .execute();
        await db.schema
          .createIndex('security_events_tenant')
          .on('security_events')
          .columns(['tenant_id', 'at'])
          .execute();
        await db.schema
          .createTable('runtime_images')
          .addColumn('digest', 'text', (c) => c.primaryKey())
          .addColumn('version', 'text', (c) => c.notNull())
          .addColumn('security_version', 'integer', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '0003_device_report': {
      async up(db: Kysely<unknown>) {
        // The runtime the device reported at its last successful attestation (bound into the
        // quote), and the newest events its boot chain reported, as canonical JSON.
        const add = (column: string, type: 'text' | 'integer') =>
          db.schema.alterTable('devices').addColumn(column, type).execute();
        await add('runtime_slot', 'text');
        await add('runtime_version', 'text');
        await add('runtime_digest', 'text');
        await add('runtime_security_version', 'integer');
        await add('runtime_trial', 'integer');
        await add('runtime_floor', 'integer');
        await add('runtime_reported_at', 'text');
        await add('runtime_events', 'text');
      },
    },
    '0004_broker': {
      async up(db: Kysely<unknown>) {
        // Device-to-device messages through groups/<id>/… flow only where the group allows them.
        await db.schema
          .alterTable('device_groups')
          .addColumn('allow_peer_messages', 'integer', (c) => c.notNull().defaultTo(0))
          .execute();
      },
    },
    '0005_error_reports': {
      async up(db: Kysely<unknown>) {
        // Failure reports, kept for the retention period. Identity is (device, report UUID): a
        // retried upload hits the key and is counted as a duplicate, never stored twice.
        await db.schema
          .createTable('error_reports')
          .addColumn('device_id', 'text', (c) => c.notNull())
          .addColumn('id', 'text', (c) => c.notNull())
          .addColumn('tenant_id', 'text', (c) => c.notNull())
          .addColumn('bucket_id', 'text', (c) => c.notNull())
          .addColumn('component_id', 'text', (c) => c.notNull())
          .addColumn('image_id', 'text')
          .addColumn('boot_id', 'text', (c) => c.notNull())
          .addColumn('device_group_id', 'text')
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('last_at', 'text', (c) => c.notNull())
          .addColumn('count', 'integer', (c) => c.notNull())
          .addColumn('details', 'text', (c) => c.notNull())
          .addColumn('received_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('error_reports_pk', ['device_id', 'id'])
          .execute();
        // Reads go by time (every bucket query is over a window). No index by bucket: reports
        // arrive spread over hundreds of buckets, and such an index cost more than half of the
        // ingest rate on SQLite (bench/error-reports.ts).
        await db.schema
          .createIndex('error_reports_tenant_at')
          .on('error_reports')
          .columns(['tenant_id', 'at'])
          .execute();
        // One row per (tenant, component, kind, signature): what the bucket is. Its counts are
        // computed from the retained reports, so retention and filters never leave them stale.
        await db.schema
          .createTable('error_buckets')
          .addColumn('tenant_id', 'text', (c) => c.notNull())
          .addColumn('id', 'text', (c) => c.notNull())
          .addColumn('component_id', 'text', (c) => c.notNull())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('signature', 'text', (c) => c.notNull())
          .addColumn('description', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('error_buckets_pk', ['tenant_id', 'id'])
          .execute();
      },
    },
    '0006_images': {
      async up(db: Kysely<unknown>) {
        // The tenant's production image-signing key: the service re-signs every uploaded image
        // with it (the private key sealed under the master key, like the tenant CAs).
        await db.schema
          .createTable('tenant_image_keys')
          .addColumn('tenant_id', 'text', (c) => c.primaryKey().references('tenants.id'))
          .addColumn('key_id', 'text', (c) => c.notNull())
          .addColumn('public_key_pem', 'text', (c) => c.notNull())
          .addColumn('key_sealed', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        // Images by (tenant, image id): another tenant's image ids are neither visible nor in the way.
        await db.schema
          .createTable('images')
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('id', 'text', (c) => c.notNull())
          .addColumn('component_id', 'text', (c) => c.notNull())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('version', 'text', (c) => c.notNull())
          .addColumn('security_version', 'integer', (c) => c.notNull())
          .addColumn('type', 'text', (c) => c.notNull())
          .addColumn('digest', 'text', (c) => c.notNull())
          .addColumn('blob_sha256', 'text', (c) => c.notNull())
          .addColumn('size', 'integer', (c) => c.notNull())
          .addColumn('app_manifest', 'text')
          .addColumn('uploaded_by', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('images_pk', ['tenant_id', 'id'])
          .execute();
        await db.schema
          .createIndex('images_component')
          .on('images')
          .columns(['tenant_id', 'component_id'])
          .execute();
      },
    },
    '0007_deployments': {
      async up(db: Kysely<unknown>) {
        // A deployment names the images a device group must run; the newest one of a group is
        // the group's current deployment. Image ids as a JSON array, in the order given.
        await db.schema
          .createTable('deployments')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('device_group_id', 'text', (c) => c.notNull().references('device_groups.id'))
          .addColumn('image_ids', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('seq', 'integer', (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex('deployments_group')
          .on('deployments')
          .columns(['tenant_id', 'device_group_id', 'seq'])
          .unique()
          .execute();
      },
    },
    '0008_runtime_releases': {
      async up(db: Kysely<unknown>) {
        // The platform's runtime-signing public keys: a runtime is published only when one of
        // them signed it (the keys devices trust from their read-only area).
        await db.schema
          .createTable('runtime_signers')
          .addColumn('key_id', 'text', (c) => c.primaryKey())
          .addColumn('public_key_pem', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        // Runtime releases on the feeds: retail-eval first, then promoted to retail; a withdrawn
        // release is never offered again.
        await db.schema
          .createTable('runtime_releases')
          .addColumn('digest', 'text', (c) => c.primaryKey())
          .addColumn('version', 'text', (c) => c.notNull().unique())
          .addColumn('security_version', 'integer', (c) => c.notNull())
          .addColumn('feed', 'text', (c) => c.notNull())
          .addColumn('blob_sha256', 'text', (c) => c.notNull())
          .addColumn('size', 'integer', (c) => c.notNull())
          .addColumn('published_at', 'text', (c) => c.notNull())
          .addColumn('promoted_at', 'text')
          .addColumn('withdrawn_at', 'text')
          .execute();
      },
    },
    '0009_device_capabilities': {
      async up(db: Kysely<unknown>) {
        // Per-device capabilities (Azure Sphere's): appDevelopment (sideloading, development
        // images; no app updates from the cloud) and fieldServicing.
        await db.schema
          .createTable('device_capabilities')
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('device_id', 'text', (c) => c.notNull().references('devices.id'))
          .addColumn('capability', 'text', (c) => c.notNull())
          .addColumn('added_by', 'text', (c) => c.notNull())
          .addColumn('added_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('device_capabilities_pk', ['device_id', 'capability'])
          .execute();
      },
    },
    '0010_tuf': {
      async up(db: Kysely<unknown>) {
        // TUF repositories of a tenant (docs/updates.md): `image` (every image and runtime
        // release) and `director` (per device group: what its devices must run). `counter` is the
        // tenant-wide source of every non-root metadata version of that repository; updating it
        // is also the lock every metadata write takes (one writer per tenant and repository).
        await db.schema
          .createTable('tuf_repositories')
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('repository', 'text', (c) => c.notNull())
          .addColumn('counter', 'integer', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('tuf_repositories_pk', ['tenant_id', 'repository'])
          .execute();
        // Signing keys per tenant, repository and role; private keys sealed under the master key.
        // A rotated key is kept (retired_at set): old root versions name it.
        await db.schema
          .createTable('tuf_keys')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('repository', 'text', (c) => c.notNull())
          .addColumn('role', 'text', (c) => c.notNull())
          .addColumn('key_id', 'text', (c) => c.notNull())
          .addColumn('public_key_pem', 'text', (c) => c.notNull())
          .addColumn('key_sealed', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('retired_at', 'text')
          .execute();
        await db.schema
          .createIndex('tuf_keys_repository')
          .on('tuf_keys')
          .columns(['tenant_id', 'repository'])
          .execute();
        // Every signed metadata file, exactly as served. scope: '' for the image repository and
        // the director's root, the device group id for a group's director targets, snapshot and
        // timestamp. Root versions are kept forever (devices walk the chain).
        await db.schema
          .createTable('tuf_metadata')
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('repository', 'text', (c) => c.notNull())
          .addColumn('scope', 'text', (c) => c.notNull())
          .addColumn('role', 'text', (c) => c.notNull())
          .addColumn('version', 'integer', (c) => c.notNull())
          .addColumn('expires_at', 'text', (c) => c.notNull())
          .addColumn('content_digest', 'text')
          .addColumn('body', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('tuf_metadata_pk', ['tenant_id', 'repository', 'scope', 'role', 'version'])
          .execute();
      },
    },
    '0011_update_status': {
      async up(db: Kysely<unknown>) {
        // What each device last said about each component's update (deployment progress): one
        // row per (device, component), replaced by every newer report.
        await db.schema
          .createTable('device_update_status')
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('device_id', 'text', (c) => c.notNull().references('devices.id'))
          .addColumn('component_id', 'text', (c) => c.notNull())
          .addColumn('image_id', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('code', 'text')
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('received_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('device_update_status_pk', ['device_id', 'component_id'])
          .execute();
      },
    },
  };
}

class StaticProvider implements MigrationProvider {
  readonly #dialect: Dialect;
  constructor(dialect: Dialect) {
    this.#dialect = dialect;
  }
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrations(this.#dialect);
  }
}

export async function migrateToLatest(db: Kysely<unknown>, dialect: Dialect): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: new StaticProvider(dialect),
    migrationTableName: 'heptad_migrations',
    migrationLockTableName: 'heptad_migrations_lock',
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    throw new HeptadError('CONFIG_INVALID', 'database migration failed', { cause: error });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

export async function ping(db: Kysely<unknown>): Promise<void> {
  await sql`select 1`.execute(db);
}
