/**
 * The one registry of Heptad error codes. Every coded error the service, the device or the
 * CLI can produce is listed here with its HTTP status, a short title and what the user should
 * do. docs/errors.md is kept in sync with this table by a test (both ways). Codes are never
 * reused once retired.
 */

export interface ErrorSpec {
  /** HTTP status when the error crosses the API. CLI-only errors use 0. */
  readonly status: number;
  readonly title: string;
  /** What the operator or user should do next; shown by the CLI after the code. */
  readonly hint: string;
}

export const ERROR_REGISTRY = {
  // Authentication and authorization
  AUTH_TOKEN_MISSING: {
    status: 401,
    title: 'No API token was sent',
    hint: 'send "Authorization: Bearer <token>"; with the CLI use --token, HEPTAD_TOKEN or heptad login',
  },
  AUTH_TOKEN_INVALID: {
    status: 401,
    title: 'The API token is not valid',
    hint: 'check the token; a token is shown once when its user is created',
  },
  AUTH_TOKEN_EXPIRED: {
    status: 401,
    title: 'The API token has expired',
    hint: 'ask an Administrator for a new token',
  },
  AUTH_ROLE_INSUFFICIENT: {
    status: 403,
    title: "The caller's role does not allow this action",
    hint: 'ask an Administrator of the tenant for a role that allows it',
  },
  AUTH_OPERATOR_REQUIRED: {
    status: 403,
    title: 'Only the platform operator may do this',
    hint: 'use the operator token (DATA/operator-token on the service host)',
  },
  AUTH_TENANT_REQUIRED: {
    status: 403,
    title: 'This action works inside a tenant; the caller belongs to none',
    hint: 'use the token of a user of the tenant (heptad user create … --tenant T)',
  },

  // Request shape
  REQUEST_INVALID: {
    status: 400,
    title: 'The request does not match its schema',
    hint: 'see the listed fields and the API reference at /docs',
  },
  REQUEST_MALFORMED_JSON: {
    status: 400,
    title: 'The request body is not valid JSON',
    hint: 'send a well-formed JSON body with Content-Type: application/json',
  },
  REQUEST_BODY_TOO_LARGE: {
    status: 413,
    title: 'The request body is larger than the configured limit',
    hint: 'send a smaller body or raise --body-limit on the service',
  },
  REQUEST_UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    title: 'The request body has an unsupported content type',
    hint: 'send Content-Type: application/json',
  },
  ROUTE_NOT_FOUND: {
    status: 404,
    title: 'No such API route',
    hint: 'see the API reference at /docs',
  },

  // Tenants and users
  TENANT_NOT_FOUND: { status: 404, title: 'No such tenant', hint: 'list tenants with heptad tenant list' },
  TENANT_NAME_TAKEN: {
    status: 409,
    title: 'A tenant with this name exists',
    hint: 'choose another name',
  },
  USER_EMAIL_TAKEN: {
    status: 409,
    title: 'A user with this email exists',
    hint: 'choose another email, or use the existing user',
  },

  // Products and device groups
  PRODUCT_NOT_FOUND: {
    status: 404,
    title: 'No such product',
    hint: 'list products with heptad product list',
  },
  PRODUCT_NAME_TAKEN: {
    status: 409,
    title: 'A product with this name exists in the tenant',
    hint: 'choose another name',
  },
  PRODUCT_HAS_DEVICES: {
    status: 409,
    title: 'The product still has devices in its device groups',
    hint: 'move the devices to another group first (heptad device update ID --device-group G)',
  },
  DEVICE_GROUP_NOT_FOUND: {
    status: 404,
    title: 'No such device group',
    hint: 'give a device group id or "Product/Group"; list them with heptad device-group list --product P',
  },
  DEVICE_GROUP_NAME_TAKEN: {
    status: 409,
    title: 'A device group with this name exists in the product',
    hint: 'choose another name',
  },
  DEVICE_GROUP_HAS_DEVICES: {
    status: 409,
    title: 'The device group still has devices',
    hint: 'move its devices to another group first (heptad device update ID --device-group G)',
  },

  // Devices
  DEVICE_NOT_FOUND: {
    status: 404,
    title: 'No such device',
    hint: 'check the id (64 hex characters); a device must be registered, then claimed',
  },
  DEVICE_ALREADY_REGISTERED: {
    status: 409,
    title: 'A device with this id is already registered',
    hint: 'nothing to do; a device is registered once',
  },
  DEVICE_PUBLIC_KEY_INVALID: {
    status: 400,
    title: 'The device public key is not an ECDSA P-256 SubjectPublicKeyInfo in PEM',
    hint: 'give the PEM of the identity key written at manufacture',
  },
  DEVICE_ID_MISMATCH: {
    status: 400,
    title: 'The device id is not the SHA-256 of its public key',
    hint: 'the id is the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo of the identity key',
  },
  DEVICE_CLAIMED_BY_OTHER_TENANT: {
    status: 409,
    title: 'The device is claimed by another tenant',
    hint: 'a device can be claimed once; only the platform operator can release it',
  },
  DEVICE_NOT_CLAIMED: {
    status: 409,
    title: 'The device is not claimed by any tenant',
    hint: 'nothing to unclaim',
  },

  // Service
  SERVICE_NOT_READY: {
    status: 503,
    title: 'The service cannot reach its store',
    hint: 'check the database and retry',
  },
  INTERNAL_ERROR: {
    status: 500,
    title: 'Internal error',
    hint: 'see the service log for the request id',
  },
  CONFIG_INVALID: {
    status: 0,
    title: 'The service configuration is not valid',
    hint: 'fix the named setting (flag, HEPTAD_* variable or config file) and start again',
  },
  DATA_DIR_UNUSABLE: {
    status: 0,
    title: 'The data directory cannot be used',
    hint: 'check that the folder exists or can be created and is writable by this user',
  },

  // CLI
  CLI_USAGE: {
    status: 0,
    title: 'The command line is not valid',
    hint: 'see heptad help COMMAND',
  },
  CLI_NOT_CONFIGURED: {
    status: 0,
    title: 'No service URL or token is configured',
    hint: 'pass --url and --token, set HEPTAD_URL and HEPTAD_TOKEN, or run heptad login',
  },
  CLI_FILE_UNREADABLE: {
    status: 0,
    title: 'A file named on the command line cannot be read',
    hint: 'check the path and its permissions',
  },
  CLI_CONNECTION_FAILED: {
    status: 0,
    title: 'The service could not be reached',
    hint: 'check --url and that the service is running',
  },
  CLI_TLS_UNTRUSTED: {
    status: 0,
    title: "The service's TLS certificate is not trusted",
    hint: 'pass --ca DATA/platform-ca.pem (or HEPTAD_CA) from the service host',
  },
  CLI_BAD_RESPONSE: {
    status: 0,
    title: 'The service sent a response the CLI does not understand',
    hint: 'check that the CLI and the service are the same version',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_REGISTRY;

export interface FieldError {
  /** JSON pointer or flag name of the offending field. */
  readonly field: string;
  readonly problem: string;
}

export interface HeptadErrorOptions {
  readonly cause?: unknown;
  readonly fields?: readonly FieldError[];
  readonly detail?: Record<string, unknown>;
}

/** The one base error: a stable code, a message for humans, optional field-level problems. */
export class HeptadError extends Error {
  readonly code: ErrorCode;
  readonly fields: readonly FieldError[];
  readonly detail: Record<string, unknown>;

  constructor(code: ErrorCode, message?: string, options: HeptadErrorOptions = {}) {
    super(message ?? ERROR_REGISTRY[code].title, options.cause === undefined ? {} : { cause: options.cause });
    this.name = 'HeptadError';
    this.code = code;
    this.fields = options.fields ?? [];
    this.detail = options.detail ?? {};
  }

  get status(): number {
    return ERROR_REGISTRY[this.code].status;
  }
}

export function isHeptadError(e: unknown): e is HeptadError {
  return e instanceof HeptadError;
}

export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && Object.hasOwn(ERROR_REGISTRY, s);
}
