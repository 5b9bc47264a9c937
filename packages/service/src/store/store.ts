import type { Kysely } from 'kysely';
import { AttestationStore, RuntimeImageStore } from '../attestation/attestation-store.ts';
import { AuditStore } from '../audit/audit-store.ts';
import { BrokerStore } from '../broker/broker-store.ts';
import { DeploymentStore } from '../deployments/deployment-store.ts';
import { DeviceRegistry, TenantDeviceStore } from '../devices/device-store.ts';
import { ErrorReportRetentionStore, ErrorReportStore } from '../error-reports/report-store.ts';
import { ImageStore } from '../images/image-store.ts';
import { ProductStore } from '../products/product-store.ts';
import { TenantStore, UserStore } from '../tenants/tenant-store.ts';
import { TufRepositoryIndex, TufStore } from '../tuf/tuf-store.ts';
import type { Connection } from './connect.ts';
import { ping } from './migrations.ts';
import type { SyncSqlite } from './node-sqlite-dialect.ts';
import type { SqlTarget } from './raw-query.ts';
import type { Database } from './schema.ts';

/** Everything a tenant may touch; every query inside filters on this tenant by construction. */
export interface TenantScope {
  readonly tenantId: string;
  readonly products: ProductStore;
  readonly devices: TenantDeviceStore;
  readonly images: ImageStore;
  readonly deployments: DeploymentStore;
  readonly audit: AuditStore;
  readonly errorReports: ErrorReportStore;
  /** update metadata (TUF): repositories, keys, signed files */
  readonly tuf: TufStore;
}

/** Platform-wide access, for the operator and for authentication only. */
export interface PlatformScope {
  readonly tenants: TenantStore;
  readonly users: UserStore;
  readonly registry: DeviceRegistry;
  readonly audit: AuditStore;
  readonly runtimeImages: RuntimeImageStore;
  /** retention of error reports: the one purge that runs across tenants */
  readonly errorReportRetention: ErrorReportRetentionStore;
  /** which tenants have TUF repositories: runtime releases and re-signing reach all of them */
  readonly tufRepositories: TufRepositoryIndex;
}

/**
 * The query layer's front door. A tenant's data is reached only through forTenant(id); the
 * separately named platform() is the operator's. transaction() gives the same two doors over
 * one transaction, so a change and its audit record commit together or not at all.
 */
export class Store {
  readonly #db: Kysely<Database>;
  readonly dialect: Connection['dialect'];
  readonly #target: SqlTarget;

  /** `sync`: the SQLite synchronous reader; given only to the root store, never inside a transaction. */
  constructor(db: Kysely<Database>, dialect: Connection['dialect'], sync?: SyncSqlite) {
    this.#db = db;
    this.dialect = dialect;
    this.#target = { dialect, sync };
  }

  forTenant(tenantId: string): TenantScope {
    const products = new ProductStore(this.#db, tenantId);
    const images = new ImageStore(this.#db, tenantId);
    return {
      tenantId,
      products,
      devices: new TenantDeviceStore(this.#db, this.#target, tenantId, products),
      images,
      deployments: new DeploymentStore(this.#db, tenantId, products, images),
      audit: new AuditStore(this.#db, tenantId),
      errorReports: new ErrorReportStore(this.#db, this.dialect, tenantId),
      tuf: new TufStore(this.#db, tenantId),
    };
  }

  platform(): PlatformScope {
    return {
      tenants: new TenantStore(this.#db),
      users: new UserStore(this.#db, this.#target),
      registry: new DeviceRegistry(this.#db, this.#target),
      audit: new AuditStore(this.#db),
      runtimeImages: new RuntimeImageStore(this.#db),
      errorReportRetention: new ErrorReportRetentionStore(this.#db),
      tufRepositories: new TufRepositoryIndex(this.#db),
    };
  }

  /** Attestation runs before a device is authenticated, so its store is platform-wide. */
  attestation(): AttestationStore {
    return new AttestationStore(this.#db, this.#target);
  }

  /** The MQTT broker authenticates before it knows a tenant: platform-wide reads, tenant compared by the caller. */
  broker(): BrokerStore {
    return new BrokerStore(this.#db, this.#target);
  }

  /** For the tenant PKI, which owns its own table and needs the raw handle for its transactions. */
  get db(): Kysely<Database> {
    return this.#db;
  }

  transaction<T>(work: (store: Store) => Promise<T>): Promise<T> {
    return this.#db.transaction().execute((trx) => work(new Store(trx, this.dialect)));
  }

  ping(): Promise<void> {
    return ping(this.#db as unknown as Kysely<unknown>);
  }
}
