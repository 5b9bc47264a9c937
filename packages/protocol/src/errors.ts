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

  AUTH_DEVICE_CERT_MISSING: {
    status: 401,
    title: 'This device route needs a device client certificate (mTLS)',
    hint: 'connect over HTTPS with the 24 h device certificate and key the tenant CA issued at attestation',
  },
  AUTH_DEVICE_CERT_UNTRUSTED: {
    status: 401,
    title: 'The client certificate was not issued by a tenant CA of this service',
    hint: 'attest the device (heptad device attest) and use the certificate it earned',
  },
  AUTH_DEVICE_CERT_EXPIRED: {
    status: 401,
    title: 'The device certificate has expired or is not yet valid',
    hint: 'attest again for a fresh 24 h certificate; check the device clock',
  },
  AUTH_DEVICE_CERT_REVOKED: {
    status: 401,
    title: 'The device certificate has been revoked',
    hint: 'attest again for a new certificate (a quarantined device must be released first)',
  },
  AUTH_DEVICE_QUARANTINED: {
    status: 403,
    title: 'The device is quarantined',
    hint: 'a tenant Contributor releases it with heptad device release ID once it is trusted again',
  },
  AUTH_DEVICE_NOT_CLAIMED: {
    status: 403,
    title: 'The device is no longer claimed by the tenant its certificate names',
    hint: 'claim the device again and attest for a certificate of its tenant',
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
  DEVICE_NOT_QUARANTINED: {
    status: 409,
    title: 'The device is not quarantined',
    hint: 'nothing to release',
  },
  DEVICE_NOT_CLAIMED: {
    status: 409,
    title: 'The device is not claimed by any tenant',
    hint: 'nothing to unclaim',
  },
  DEVICE_CAPABILITY_EXISTS: {
    status: 409,
    title: 'The device has this capability already',
    hint: 'nothing to do',
  },
  DEVICE_CAPABILITY_NOT_FOUND: {
    status: 404,
    title: 'The device does not have this capability',
    hint: 'list its capabilities with heptad device capability list ID',
  },

  // Attestation
  ATTEST_DEVICE_UNKNOWN: {
    status: 404,
    title: 'The device is not in the device registry',
    hint: 'register the device first (heptad device register --from DIR/registration.json)',
  },
  ATTEST_DEVICE_UNCLAIMED: {
    status: 409,
    title: 'The device is not claimed by any tenant',
    hint: 'claim the device (heptad device claim ID); only claimed devices get certificates',
  },
  ATTEST_DEVICE_QUARANTINED: {
    status: 403,
    title: 'The device is quarantined',
    hint: 'investigate; a tenant Contributor lifts it with heptad device release ID',
  },
  ATTEST_NONCE_UNKNOWN: {
    status: 400,
    title: 'The nonce was never issued',
    hint: 'request a fresh challenge and answer it',
  },
  ATTEST_NONCE_WRONG_DEVICE: {
    status: 400,
    title: 'The nonce was issued to another device',
    hint: 'request a challenge for this device',
  },
  ATTEST_NONCE_EXPIRED: {
    status: 400,
    title: 'The nonce has expired',
    hint: 'request a fresh challenge; answer within 60 s',
  },
  ATTEST_NONCE_REPLAYED: {
    status: 400,
    title: 'The nonce was already used',
    hint: 'request a fresh challenge; each nonce is single-use',
  },
  ATTEST_EVIDENCE_MALFORMED: {
    status: 400,
    title: 'The attestation evidence cannot be parsed',
    hint: 'send the evidence the Heptad device agent produces',
  },
  ATTEST_QUOTE_SIGNATURE_INVALID: {
    status: 400,
    title: 'The quote is not signed by the registered identity key',
    hint: "the device's root of trust does not hold the registered key; check the registration",
  },
  ATTEST_QUOTE_NONCE_MISMATCH: {
    status: 400,
    title: 'The quote does not cover this nonce and CSR',
    hint: 'quote the binding of the challenge nonce and the CSR, as the device agent does',
  },
  ATTEST_QUOTE_PCR_SELECTION_MISMATCH: {
    status: 400,
    title: 'The quote covers other registers than the measurement register',
    hint: "quote the device's measurement register in the sha256 bank",
  },
  ATTEST_LOG_MISMATCH: {
    status: 400,
    title: 'The measurement log does not replay to the quoted register values',
    hint: "the device's measurement log is incomplete or altered; reboot the device",
  },
  ATTEST_REPORT_MISMATCH: {
    status: 400,
    title: 'The device report names another runtime than the last one measured',
    hint: 'the report must name the runtime the boot chain measured last; send the report the device runtime makes',
  },
  ATTEST_RUNTIME_UNKNOWN: {
    status: 403,
    title: 'A measured runtime image is not a known platform runtime',
    hint: 'run a runtime the platform knows (heptad runtime-image list)',
  },
  ATTEST_APP_NOT_ALLOWED: {
    status: 403,
    title: "A measured app is not one the device's group may run",
    hint: "deploy the app to the device's group, or give the device the appDevelopment capability for developer-signed apps",
  },
  ATTEST_CSR_INVALID: {
    status: 400,
    title: 'The certificate signing request is malformed or its signature is invalid',
    hint: 'send a PKCS#10 CSR signed by the new TLS key',
  },
  ATTEST_CSR_SUBJECT_MISMATCH: {
    status: 400,
    title: 'The CSR names another device',
    hint: 'the CSR subject CN must be the device id',
  },
  ATTEST_CSR_KEY_REUSED: {
    status: 409,
    title: 'The CSR key is already certified for another device',
    hint: 'generate a fresh TLS key on the device',
  },
  TENANT_CA_ROTATION_PENDING: {
    status: 409,
    title: 'A next issuing CA is already waiting for its activation',
    hint: 'wait until it is active (heptad tenant ca-certificate list)',
  },
  RUNTIME_IMAGE_EXISTS: {
    status: 409,
    title: 'This runtime image digest is already known',
    hint: 'nothing to do',
  },
  RUNTIME_SIGNER_INVALID: {
    status: 400,
    title: 'The runtime-signing key is not an ECDSA P-256 public key in PEM',
    hint: 'give the .pub file heptad key create wrote next to the platform runtime-signing key',
  },
  RUNTIME_SIGNER_EXISTS: {
    status: 409,
    title: 'This runtime-signing key is registered already',
    hint: 'nothing to do',
  },
  RUNTIME_RELEASE_NOT_FOUND: {
    status: 404,
    title: 'No such runtime release (or none on this feed yet)',
    hint: 'list the releases with heptad runtime list',
  },
  RUNTIME_RELEASE_EXISTS: {
    status: 409,
    title: 'A runtime release with this digest or version exists',
    hint: 'publish a new build with a new version',
  },
  RUNTIME_RELEASE_WITHDRAWN: {
    status: 409,
    title: 'The runtime release is withdrawn',
    hint: 'a withdrawn release is never offered or promoted again; publish a fixed release',
  },
  RUNTIME_RELEASE_ALREADY_RETAIL: {
    status: 409,
    title: 'The runtime release is on the retail feed already',
    hint: 'nothing to do',
  },
  RUNTIME_BUILD_FAILED: {
    status: 0,
    title: 'The runtime could not be bundled',
    hint: 'see the bundler message; with --from, check that the module and its imports exist',
  },

  // Boot
  BOOT_NO_VALID_RUNTIME: {
    status: 0,
    title: 'Neither runtime slot holds a package that verifies',
    hint: 'see the per-slot reason codes; reinstall a platform-signed runtime from recovery media',
  },
  BOOT_SLOT_EMPTY: {
    status: 0,
    title: 'The runtime slot holds no package',
    hint: 'install a runtime into the slot (heptad device sideload)',
  },
  BOOT_SLOT_UNREADABLE: {
    status: 0,
    title: 'The runtime slot package cannot be read',
    hint: 'check the device storage; reinstall the runtime',
  },
  BOOT_NOT_RUNTIME: {
    status: 0,
    title: 'The package is not a runtime package',
    hint: 'install a package built with heptad runtime pack (type runtime)',
  },
  BOOT_BELOW_FLOOR: {
    status: 0,
    title: "The slot's runtime security version is below the anti-rollback floor",
    hint: 'install a runtime whose security version is at least the floor',
  },
  BOOT_ROLLBACK_REFUSED: {
    status: 0,
    title: 'The runtime to install has a security version below the anti-rollback floor',
    hint: 'install a runtime whose security version is at least the floor',
  },
  BOOT_NO_TRIAL: {
    status: 0,
    title: 'No runtime trial is pending',
    hint: 'install a runtime first; a trial is committed or rolled back only once',
  },
  BOOT_STATE_PATH_INVALID: {
    status: 0,
    title: 'A device state path escapes the state folder',
    hint: 'this is a bug in the caller; paths are relative and never contain ..',
  },
  BOOT_NO_PLATFORM_KEY: {
    status: 0,
    title: "The device's read-only area holds no usable platform runtime-signing key",
    hint: 'manufacture the device with --runtime and --runtime-signer (ECDSA P-256 public keys, PEM)',
  },
  BOOT_ALREADY_RUNNING: {
    status: 0,
    title: 'Another heptad device run uses this state folder',
    hint: 'stop the other one first (a device boots once); its pid is in DIR/run.lock',
  },

  // Device state
  DEVICE_STATE_EXISTS: {
    status: 0,
    title: 'The device state folder already holds a device',
    hint: 'choose an empty or new folder for --state',
  },
  DEVICE_STATE_INVALID: {
    status: 0,
    title: 'The device state folder is missing or damaged',
    hint: 'give the --state folder written by heptad device manufacture',
  },
  DEVICE_STATE_PERMISSIONS: {
    status: 0,
    title: 'The device state folder is open to other users',
    hint: 'it holds the device secrets and runtime slots: chown it to the device user and chmod 700 it and its secrets folder',
  },
  DEVICE_ROT_SPEC_INVALID: {
    status: 0,
    title: 'The root-of-trust specification is not valid',
    hint: 'use --rot soft, --rot tpm:HOST:PORT (swtpm) or --rot tpm:/dev/tpmrm0',
  },
  DEVICE_LOG_OUT_OF_SYNC: {
    status: 0,
    title: "The measurement log does not match the root of trust's registers",
    hint: 'restart the device so measurement starts again from a clean boot',
  },
  DEVICE_SERVICE_UNREACHABLE: {
    status: 0,
    title: 'The device cannot reach the security service',
    hint: 'check the network and the service URL in the device state',
  },

  // Error reports (failure reporting)
  REPORT_BATCH_TOO_LARGE: {
    status: 413,
    title: 'The error-report batch holds more reports than allowed',
    hint: 'send at most 100 reports per batch',
  },
  REPORT_TOO_LARGE: {
    status: 413,
    title: 'An error report is larger than allowed',
    hint: 'keep each report within 16 KiB of JSON (the device library trims stacks and messages)',
  },
  REPORT_DEVICE_MISMATCH: {
    status: 403,
    title: 'A report names another device than the certificate that sent it',
    hint: 'a device sends only its own reports; leave deviceId out or set it to the id in the certificate',
  },
  REPORT_TIME_SKEWED: {
    status: 400,
    title: 'A report time is too far in the future or older than the retention period',
    hint: 'set the device clock (NTP); reports older than the retention period are not accepted',
  },
  REPORT_RATE_LIMITED: {
    status: 429,
    title: 'This device sent more reports than its rate allows',
    hint: 'wait the Retry-After seconds and send again; the batch was not stored',
  },
  REPORT_BUCKET_NOT_FOUND: {
    status: 404,
    title: 'No such error-report bucket',
    hint: 'list buckets with heptad error-report list',
  },
  REPORT_RANGE_INVALID: {
    status: 400,
    title: 'The time range is not valid',
    hint: 'give --from before --to, both ISO-8601 UTC (or 7d, 24h relative to now)',
  },
  REPORT_QUEUE_INVALID: {
    status: 0,
    title: "The device's error-report queue cannot be read",
    hint: 'give the --state folder of a manufactured device; a damaged queue is replaced at the next record',
  },
  REPORT_DEVICE_NOT_RUNNING: {
    status: 0,
    title: 'The device is not running',
    hint: 'start it with heptad device run --state DIR, then ask again',
  },
  REPORT_UPLOAD_TIMEOUT: {
    status: 0,
    title: 'The device did not finish an error-report upload in time',
    hint: "see the device's log; raise --timeout",
  },
  REPORT_UPLOAD_FAILED: {
    status: 0,
    title: 'The device could not upload its error reports',
    hint: "the detail names the code; check the device's certificate (heptad device status) and the service",
  },

  // Image packages
  IMAGE_TRUNCATED: {
    status: 400,
    title: 'The image package ends before its structure does',
    hint: 'send the whole package file; it was cut short in transfer or on disk',
  },
  IMAGE_MAGIC_INVALID: {
    status: 400,
    title: 'The data is not a Heptad image package',
    hint: 'send a package made by the Heptad image builder (it starts with the 4 bytes HPKG)',
  },
  IMAGE_VERSION_UNSUPPORTED: {
    status: 400,
    title: 'The image package format version or flags are not supported',
    hint: 'build the package with a tool of the same Heptad release (format version 1, flags 0)',
  },
  IMAGE_TOO_LARGE: {
    status: 400,
    title: 'The image package is larger than the configured limit',
    hint: 'make the package smaller (64 MiB by default) or raise the limit where it is configured',
  },
  IMAGE_LIMIT_EXCEEDED: {
    status: 400,
    title: 'A part of the image package is over its limit',
    hint: 'keep within the limits of docs/formats/image-package.md (manifest, files, signatures, app manifest)',
  },
  IMAGE_SIGNATURE_MISSING: {
    status: 400,
    title: 'The image package carries no signature',
    hint: 'sign the package before uploading or installing it',
  },
  IMAGE_SIGNATURE_MALFORMED: {
    status: 400,
    title: 'A signature of the image package is not well-formed',
    hint: 're-sign the package; a signature is a DER ECDSA-Sig-Value of 8 to 72 bytes',
  },
  IMAGE_SIGNATURE_UNTRUSTED: {
    status: 400,
    title: 'No signature of the image package is by a trusted key',
    hint: 'sign with a key the verifier trusts (the tenant or platform key), or add that key to the trusted keys',
  },
  IMAGE_SIGNATURE_INVALID: {
    status: 400,
    title: 'A signature by a trusted key does not verify',
    hint: 'the package was altered after signing or signed by another key under this key id; rebuild and re-sign it',
  },
  IMAGE_SIGNATURE_DUPLICATE: {
    status: 400,
    title: 'The same key signed the image package twice',
    hint: 'each key signs a package once; nothing to add',
  },
  IMAGE_KEY_UNSUPPORTED: {
    status: 400,
    title: 'The key is not an ECDSA P-256 key, or does not match its key id',
    hint: 'use ECDSA P-256 keys; a trusted key id must be the SHA-256 of the DER SubjectPublicKeyInfo of the key',
  },
  IMAGE_MANIFEST_NOT_CANONICAL: {
    status: 400,
    title: 'The image package manifest is not canonical JSON',
    hint: 'build the package with the Heptad tools: the manifest is UTF-8 JSON with sorted keys and no whitespace',
  },
  IMAGE_MANIFEST_INVALID: {
    status: 400,
    title: 'The image package manifest is not valid',
    hint: 'fix the listed fields of the manifest and build the package again',
  },
  IMAGE_PATH_INVALID: {
    status: 400,
    title: 'A file path in the image package is not allowed',
    hint: 'use relative paths of [A-Za-z0-9._/-], at most 255 bytes, components of at most 100 bytes, no . or .. components',
  },
  IMAGE_PATH_CONFLICT: {
    status: 400,
    title: 'Two file paths of the image package collide',
    hint: 'make every path unique, also ignoring case, and never both a file and a folder',
  },
  IMAGE_PAYLOAD_MALFORMED: {
    status: 400,
    title: 'The payload of the image package is not well-formed',
    hint: 'build the package with the Heptad tools (files in path order, modes 0644 or 0755, entries inside the payload)',
  },
  IMAGE_FILE_DIGEST_MISMATCH: {
    status: 400,
    title: 'A file content does not match its SHA-256',
    hint: 'build the package again; the builder that made it is faulty',
  },
  IMAGE_PAYLOAD_MISMATCH: {
    status: 400,
    title: 'The payload does not match the payloadSha256 or payloadSize of the manifest',
    hint: 'build the package again; the builder that made it is faulty',
  },
  IMAGE_TRAILING_BYTES: {
    status: 400,
    title: 'Bytes follow the end of the image package or of its payload',
    hint: 'send the package exactly as built, with nothing appended',
  },
  IMAGE_NOT_FOUND: {
    status: 404,
    title: 'No such image in this tenant',
    hint: 'list the images with heptad image list',
  },
  IMAGE_EXISTS: {
    status: 409,
    title: 'An image with this image id and other contents exists',
    hint: 'every build has a new image id: pack the app again (heptad image pack) rather than editing a package',
  },
  IMAGE_COMPONENT_CONFLICT: {
    status: 409,
    title: "The image's component id belongs to another application of the tenant",
    hint: 'give each application its own ComponentId in app_manifest.json and keep it across versions',
  },
  IMAGE_TYPE_NOT_ALLOWED: {
    status: 400,
    title:
      'The package is of the wrong type here: tenants upload applications, the operator publishes runtimes',
    hint: 'applications: heptad image pack and image add; runtimes: heptad runtime pack, sign and publish (operator)',
  },

  // Deployments
  DEPLOYMENT_NOT_FOUND: {
    status: 404,
    title: 'No such deployment in this tenant',
    hint: 'list a device group’s deployments with heptad deployment list --device-group G',
  },
  DEPLOYMENT_INVALID: {
    status: 400,
    title: 'The deployment names an image twice, or two versions of one application',
    hint: 'name each application once, with the version its devices must run',
  },
  DEPLOYMENT_CONCURRENT: {
    status: 409,
    title: 'Another deployment to this device group was created at the same moment',
    hint: 'list the group’s deployments and create yours again if it is still wanted',
  },

  // Update metadata (TUF) served to devices
  TUF_METADATA_NOT_FOUND: {
    status: 404,
    title: 'No such TUF metadata file: an unknown name, or a version that does not exist (yet)',
    hint: 'ask for timestamp.json, root.json or N.root.json / N.snapshot.json / N.targets.json of a version the repository has; see docs/updates.md',
  },
  TUF_TARGET_NOT_FOUND: {
    status: 404,
    title:
      'No such target in the tenant’s image repository (unknown name, wrong hash prefix, or no longer a target)',
    hint: 'download a target by the consistent-snapshot name the current targets metadata gives: apps/<componentId>/<sha256>.<imageId>.hpkg or runtime/<sha256>.<imageId>.hpkg',
  },
  TUF_RANGE_NOT_SATISFIABLE: {
    status: 416,
    title: 'The Range header is not one satisfiable byte range of the file',
    hint: 'send one range, bytes=a-b, bytes=a- or bytes=-n, with a below the file’s length (in the Content-Range of the answer)',
  },
  TUF_DEVICE_NOT_IN_GROUP: {
    status: 409,
    title: 'The device is in no device group, so the director has no metadata for it',
    hint: 'put the device in a device group: heptad device update ID --device-group G',
  },

  // App manifests, board definitions and installing an app on a device
  APP_MANIFEST_INVALID: {
    status: 400,
    title: 'The app manifest is not valid',
    hint: 'fix the listed fields of app_manifest.json; see docs/formats/app-manifest.md',
  },
  APP_COMPONENT_CONFLICT: {
    status: 409,
    title: 'An app with this component id is installed under another name',
    hint: 'keep the Name of the installed app, or give the new app its own ComponentId',
  },
  APP_NAME_TAKEN: {
    status: 409,
    title: 'Another app (another component id) is installed under this name',
    hint: 'give the app another Name, or remove the installed app first',
  },
  APP_PERIPHERAL_UNKNOWN: {
    status: 409,
    title: "The app requests a peripheral the device's board definition does not have",
    hint: "use the peripheral names of the device's board.json, or add the peripheral there",
  },
  APP_PERIPHERAL_TYPE_MISMATCH: {
    status: 409,
    title: 'The app requests a peripheral under another type than the board definition gives it',
    hint: 'list the peripheral under the capability of its board type (gpio → Gpio, i2c → I2cMaster, …)',
  },
  APP_PERIPHERAL_TAKEN: {
    status: 409,
    title: 'A peripheral the app requests belongs to another installed app',
    hint: 'a peripheral belongs to one app: remove it from one of the two manifests, or remove the other app',
  },
  APP_PORT_TAKEN: {
    status: 409,
    title: 'A server port the app requests is already granted to another installed app',
    hint: 'choose another port, or remove it from the other app',
  },
  BOARD_DEFINITION_INVALID: {
    status: 0,
    title: 'The board definition is not valid',
    hint: 'fix the listed fields of board.json; see docs/formats/app-manifest.md',
  },

  // Apps on the device: the app store, the supervisor and its brokered capabilities
  APP_RUNTIME_COMPONENT: {
    status: 0,
    title:
      "The package claims the device runtime's component id, or is a runtime package, not an application",
    hint: 'install runtimes with heptad device sideload of a runtime package; an app needs its own ComponentId',
  },
  APP_SIGNATURE_UNTRUSTED: {
    status: 0,
    title: 'The application package is not signed by a key the device trusts for apps',
    hint: 'sign it through the service (tenant production key), or enable app development and add your developer key (heptad device sideload --developer-key)',
  },
  APP_ROLLBACK_REFUSED: {
    status: 0,
    title: "The application's security version is below the highest one this device committed for it",
    hint: "install a build with a security version at or above the device's floor for this app",
  },
  APP_NOT_INSTALLED: {
    status: 0,
    title: 'No app with this component id is installed on the device',
    hint: 'list the installed apps with heptad device apps --state DIR',
  },
  APP_NO_TRIAL: {
    status: 0,
    title: 'The app has no trial to commit or roll back',
    hint: 'install a new version first (it becomes the trial)',
  },
  APP_STORE_INVALID: {
    status: 0,
    title: "The device's app store record (apps/installed.json) is damaged",
    hint: 'reinstall the apps; the record is rewritten by the next install or removal',
  },
  APP_SLOT_INVALID: {
    status: 0,
    title: "An installed app's package no longer verifies (damaged, or signed by a key no longer trusted)",
    hint: 'reinstall the app; the supervisor will not start it',
  },
  APP_CAPABILITY_DENIED: {
    status: 0,
    title: "The app's manifest does not grant what it asked for",
    hint: 'add the capability to app_manifest.json (a new signed build) if the app really needs it',
  },
  APP_REQUEST_INVALID: {
    status: 0,
    title: 'The app sent the supervisor a request that is not valid',
    hint: 'use @heptad/sdk; a hand-made IPC message must follow docs/apps.md',
  },
  APP_RATE_LIMITED: {
    status: 0,
    title: 'The app sent the supervisor more requests than it allows',
    hint: 'slow down; the app is stopped and restarted if it keeps flooding',
  },
  APP_STORAGE_QUOTA: {
    status: 0,
    title: "The write would take the app's mutable storage past its MutableStorage quota",
    hint: 'delete data first, or raise MutableStorage.SizeKB in a new build',
  },
  APP_STORAGE_NOT_FOUND: {
    status: 0,
    title: "No such file in the app's mutable storage",
    hint: 'check the name; list the files with storage.list()',
  },
  APP_CONNECT_FAILED: {
    status: 0,
    title: 'The supervisor could not open the connection the app asked for',
    hint: 'check that the host resolves and accepts connections on that port',
  },
  APP_PERIPHERAL_FAILED: {
    status: 0,
    title: 'The peripheral backend failed the operation',
    hint: "check the board definition's backend and the device's hardware",
  },
  APP_NOT_RUNNING: {
    status: 0,
    title: 'The app is not running',
    hint: 'start it (heptad device apps) or check its error reports',
  },
  APP_MQTT_UNAVAILABLE: {
    status: 0,
    title: "The device's broker session is not up (no broker, connecting, or refused)",
    hint: 'retry later; heptad device status shows the session (broker: …)',
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
  CLI_DEMO_STEP_FAILED: {
    status: 0,
    title: 'A step of heptad demo failed',
    hint: 'the line marked ✗ says what was checked and why it failed; the data folder is kept for a look (--data)',
  },
  CLI_DEMO_INTERRUPTED: {
    status: 0,
    title: 'heptad demo was interrupted (Ctrl-C); everything it started is stopped',
    hint: 'run it again; --data DIR keeps what it made',
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
  CLI_APP_DIR_INVALID: {
    status: 0,
    title: 'The application folder cannot be packed',
    hint: 'give a folder with an app_manifest.json (Name, ComponentId, EntryPoint) and regular files only, no links',
  },
  CLI_FILE_EXISTS: {
    status: 0,
    title: 'The file to create exists already',
    hint: 'choose another --out; keys are never overwritten',
  },
  KEY_FILE_INVALID: {
    status: 0,
    title: 'The key file is not an ECDSA P-256 private key in PKCS#8 PEM',
    hint: 'create signing keys with heptad key create',
  },
  KEY_FILE_PERMISSIONS: {
    status: 0,
    title: 'The private key file is readable by other users',
    hint: 'chmod 600 the key file (and consider the key exposed if others could read it)',
  },

  // TPM and root of trust
  TPM_STRUCTURE_INVALID: {
    status: 400,
    title: 'A TPM 2.0 structure is malformed',
    hint: 'the evidence was truncated, padded or corrupted on the way; send the raw TPM bytes unchanged',
  },
  TPM_KEY_UNSUPPORTED: {
    status: 400,
    title: 'The TPM public key is not an ECC NIST P-256 key with a SHA-256 name',
    hint: 'register the TPM2B_PUBLIC of the identity key the Heptad runtime created',
  },
  TPM_QUOTE_INVALID: {
    status: 400,
    title: 'The attestation is not a TPM-generated quote',
    hint: 'send the TPMS_ATTEST returned by TPM2_Quote (magic 0xff544347, type TPM_ST_ATTEST_QUOTE)',
  },
  TPM_QUOTE_SIGNATURE_INVALID: {
    status: 400,
    title: 'The quote is not signed by the registered identity key',
    hint: 'the evidence was altered or comes from another device; check that the device uses its registered key',
  },
  TPM_QUOTE_NONCE_MISMATCH: {
    status: 400,
    title: 'The quote does not carry the expected nonce',
    hint: 'fetch a fresh nonce and quote it; an old or foreign quote is never accepted',
  },
  TPM_QUOTE_PCR_SELECTION_MISMATCH: {
    status: 400,
    title: 'The quote covers other PCRs than the ones required',
    hint: 'quote exactly the required PCRs of the SHA-256 bank',
  },
  TPM_QUOTE_PCR_DIGEST_MISMATCH: {
    status: 400,
    title: 'The quoted PCR digest does not match the PCR values given',
    hint: 'the measurement log does not replay to the quoted state; the device booted other software than it reports',
  },
  TPM_COMMAND_FAILED: {
    status: 0,
    title: 'The TPM refused a command',
    hint: 'the message names the command and the TPM response code; check the TPM state (tpm2_getcap properties-variable)',
  },
  TPM_TRANSPORT_FAILED: {
    status: 0,
    title: 'The TPM could not be reached',
    hint: 'check the --rot spec: the device (/dev/tpmrm0) must exist and be readable and writable, or swtpm must listen on HOST:PORT',
  },
  ROT_INPUT_INVALID: {
    status: 0,
    title: 'The root of trust was asked to do something it cannot',
    hint: 'PCR indexes are 0-23, a digest is 32 bytes, qualifying data is at most 64 bytes',
  },
  ROT_SIGN_INPUT_REFUSED: {
    status: 0,
    title: 'The identity key refuses to sign data that looks like a TPM attestation',
    hint: 'data to sign must not start with TPM_GENERATED_VALUE (0xff544347); prefix it with a context string',
  },
  ROT_CLOSED: {
    status: 0,
    title: 'The root of trust was used after it was closed',
    hint: 'open the root of trust again; this is a bug in the caller',
  },

  // PKI
  PKI_DER_MALFORMED: {
    status: 400,
    title: 'The data is not valid DER',
    hint: 'send the bytes exactly as the encoder wrote them: binary DER, not PEM or base64 text',
  },
  PKI_DER_UNENCODABLE: {
    status: 500,
    title: 'A value cannot be encoded in DER',
    hint: 'this is a bug in the caller; see the service log',
  },
  PKI_PEM_MALFORMED: {
    status: 400,
    title: 'The text is not one PEM block of the expected type',
    hint: 'give exactly one PEM block (-----BEGIN …-----) of the expected type and nothing else',
  },
  PKI_CSR_TOO_LARGE: {
    status: 400,
    title: 'The certificate signing request is larger than 4 KiB',
    hint: 'send the PKCS#10 CSR the Heptad device agent writes (about 240 bytes)',
  },
  PKI_CSR_MALFORMED: {
    status: 400,
    title: 'The certificate signing request is not a well-formed PKCS#10 request',
    hint: 'send a DER PKCS#10 CSR (RFC 2986), version 1, with nothing before or after it',
  },
  PKI_CSR_ALGORITHM_UNSUPPORTED: {
    status: 400,
    title: 'The certificate signing request is not signed with ecdsa-with-SHA256',
    hint: 'sign the CSR with ECDSA P-256 and SHA-256, with no algorithm parameters (RFC 5758 §3.2)',
  },
  PKI_CSR_KEY_UNSUPPORTED: {
    status: 400,
    title: 'The key is not an uncompressed EC P-256 key',
    hint: 'use an ECDSA P-256 key, encoded as an uncompressed point',
  },
  PKI_CSR_SUBJECT_INVALID: {
    status: 400,
    title: 'The subject common name of the certificate signing request is not acceptable',
    hint: 'give one common name of 1 to 64 characters, UTF8String or PrintableString, without control characters',
  },
  PKI_CSR_SIGNATURE_INVALID: {
    status: 400,
    title: 'The signature of the certificate signing request does not verify',
    hint: 'sign the CSR with the private key of the public key it carries',
  },
  PKI_CA_OPTIONS_INVALID: {
    status: 500,
    title: 'A tenant CA cannot be created from these options',
    hint: 'this is a bug in the caller; see the service log',
  },
  PKI_ISSUER_INVALID: {
    status: 500,
    title: 'The issuing CA cannot issue device certificates',
    hint: 'check that the issuing CA certificate and its key belong together and that the certificate is an EC P-256 CA',
  },
  PKI_ISSUE_INPUT_INVALID: {
    status: 500,
    title: 'A device certificate cannot be issued from these inputs',
    hint: 'this is a bug in the caller; see the listed fields',
  },
  PKI_CERT_MALFORMED: {
    status: 400,
    title: 'The certificate cannot be parsed',
    hint: 'send the DER or PEM of one X.509 certificate',
  },
  PKI_CERT_PROFILE_MISMATCH: {
    status: 400,
    title: 'The certificate is not a Heptad device certificate',
    hint: 'use the device certificate the tenant CA issued after attestation',
  },
  PKI_CRL_OPTIONS_INVALID: {
    status: 500,
    title: 'A certificate revocation list cannot be created from these options',
    hint: 'this is a bug in the caller; see the listed fields',
  },

  // MQTT broker (BROKER_: refusals by the embedded broker; MQTT_: the CLI's MQTT client; DEVICE_CERT_: export)
  BROKER_CERTIFICATE_UNKNOWN: {
    status: 0,
    title: 'The MQTT client certificate is not one this service issued to that device and tenant',
    hint: 'attest the device again (heptad device attest) and connect with the new certificate',
  },
  BROKER_CERTIFICATE_EXPIRED: {
    status: 0,
    title: 'The MQTT client certificate has expired',
    hint: 'attest again: device certificates live 24 h',
  },
  BROKER_CERTIFICATE_REVOKED: {
    status: 0,
    title: 'The MQTT client certificate is revoked',
    hint: 'a revoked certificate never works again; release the device if it was quarantined and let it attest afresh',
  },
  BROKER_DEVICE_QUARANTINED: {
    status: 0,
    title: 'The device is quarantined',
    hint: 'see heptad security-event list; release it with heptad device release when it is trusted again',
  },
  BROKER_DEVICE_NOT_CLAIMED: {
    status: 0,
    title: 'The device no longer belongs to the tenant its certificate names',
    hint: 'the device was unclaimed or moved: attest again under its current tenant',
  },
  BROKER_CREDENTIALS_INVALID: {
    status: 0,
    title: 'The MQTT client has no valid credentials',
    hint: "devices connect with their certificate; cloud clients send a tenant user's API token as the MQTT password",
  },
  BROKER_CLIENT_ID_INVALID: {
    status: 0,
    title: "The MQTT clientId does not match the client's identity",
    hint: 'a device uses its device id; a cloud client uses <tenant id>/<label>',
  },
  BROKER_TOPIC_DENIED: {
    status: 0,
    title: 'The MQTT client may not use this topic',
    hint: 'devices use devices/<own id>/…, and groups/<group id>/… when the group allows peer messages; see docs/broker.md',
  },
  BROKER_PACKET_TOO_LARGE: {
    status: 0,
    title: 'The MQTT packet is larger than the broker accepts',
    hint: 'send smaller messages, or raise --mqtt-max-packet-size on the service',
  },
  BROKER_SUBSCRIPTION_LIMIT: {
    status: 0,
    title: 'The MQTT client holds as many subscriptions as the broker allows',
    hint: 'use fewer, wider filters (devices/+/…); a SUBSCRIBE with more than 100 filters closes the connection',
  },
  BROKER_PERSISTENT_SESSION_REFUSED: {
    status: 0,
    title: 'The MQTT broker keeps no persistent sessions (clean session 0 is refused)',
    hint: 'connect with clean session 1 (mosquitto_sub without -c, mqtt.js clean: true) and subscribe again after each connect',
  },
  MQTT_CONNECTION_FAILED: {
    status: 0,
    title: 'The MQTT broker cannot be reached or closed the connection',
    hint: 'check --broker, that the service runs its broker (--mqtt-listen) and the CA',
  },
  MQTT_CONNECTION_REFUSED: {
    status: 0,
    title: 'The MQTT broker refused the connection',
    hint: "check the token (a tenant user's) and the clientId; see the return code",
  },
  MQTT_SUBSCRIBE_REFUSED: {
    status: 0,
    title: 'The MQTT broker refused the subscription',
    hint: 'use devices/<id>/… or devices/+/… and groups/<id>/… of your tenant; # at the root is never allowed',
  },
  MQTT_PUBLISH_REFUSED: {
    status: 0,
    title: 'The MQTT broker refused the message and closed the connection',
    hint: "publishing needs the Contributor role and a topic of your tenant's devices or groups",
  },
  DEVICE_CERT_EXPORT_TPM: {
    status: 0,
    title: 'The certificate key of a TPM device cannot be exported',
    hint: "export works only for a soft root of trust (development); a TPM device's TLS key stays on the device",
  },
  DEVICE_CERT_NOT_ISSUED: {
    status: 0,
    title: 'The device holds no certificate yet',
    hint: 'attest it first: heptad device attest --state DIR',
  },
  DEVICE_CERT_OUT_UNSAFE: {
    status: 0,
    title: 'The export folder is writable by other users',
    hint: 'export into a folder only you can write to (chmod go-w DIR2), or a new one',
  },
  UPDATE_TRANSITION_INVALID: {
    status: 0,
    title: 'The update agent was asked for a step its transition table does not allow',
    hint: "a bug: report it with the device's update/jobs.json",
  },
  UPDATE_METADATA_INVALID: {
    status: 0,
    title: 'The update metadata is not valid',
    hint: "check the service's TUF repositories (heptad tuf show) and the device's clock",
  },
  UPDATE_METADATA_EXPIRED: {
    status: 0,
    title: 'The update metadata has expired',
    hint: 'the service re-signs metadata automatically; check that it runs and that the device clock is right',
  },
  UPDATE_METADATA_ROLLBACK: {
    status: 0,
    title: 'The update metadata is older than what the device already trusts',
    hint: 'nothing to install: someone served old metadata (rollback attack)',
  },
  UPDATE_METADATA_UNSIGNED: {
    status: 0,
    title: 'The update metadata is not signed by enough trusted keys',
    hint: 'someone served metadata signed by a wrong key, or the threshold is not met',
  },
  UPDATE_METADATA_LENGTH: {
    status: 0,
    title: 'The update metadata is longer than declared or does not match its hash',
    hint: 'someone served altered or endless metadata',
  },
  UPDATE_METADATA_UNAVAILABLE: {
    status: 0,
    title: 'The service did not serve the update metadata',
    hint: "check that the device's tenant and group exist and that the service runs",
  },
  UPDATE_METADATA_MISMATCH: {
    status: 0,
    title: 'The director and the image repository disagree about a target',
    hint: 'someone altered one repository (mix-and-match attack); nothing is installed',
  },
  UPDATE_TARGET_UNKNOWN: {
    status: 0,
    title: 'The director names an image the image repository does not list',
    hint: 'nothing is installed (arbitrary-software attack)',
  },
  UPDATE_TARGET_LENGTH: {
    status: 0,
    title: 'A download sent more or fewer bytes than asked for',
    hint: 'the download stops (endless-data attack or a broken server)',
  },
  UPDATE_TARGET_CORRUPT: {
    status: 0,
    title: 'The downloaded image does not match its length and hash',
    hint: 'the download is dropped and retried from the start at a later check',
  },
  UPDATE_DOWNLOAD_TIMEOUT: {
    status: 0,
    title: 'A download took longer than allowed',
    hint: 'check the network; the download resumes where it stopped at the next check',
  },
  UPDATE_DOWNLOAD_FAILED: {
    status: 0,
    title: 'A download failed',
    hint: 'check the network and the service; the download resumes at the next check',
  },
  UPDATE_NO_SPACE: {
    status: 0,
    title: 'Not enough free space for the update',
    hint: "free space on the device's state folder",
  },
  UPDATE_INSTALL_FAILED: {
    status: 0,
    title: 'The update could not be installed',
    hint: "see the error report for the package's own refusal",
  },
  UPDATE_ROLLED_BACK: {
    status: 0,
    title: 'The update failed its health check and was rolled back',
    hint: "see the app's or runtime's error reports; deploy a fixed version",
  },
  UPDATE_BUSY: {
    status: 0,
    title: 'An update check is already running',
    hint: 'wait for it to finish',
  },
  UPDATE_DEVICE_NOT_RUNNING: {
    status: 0,
    title: 'The device is not running',
    hint: 'start it with heptad device run --state DIR, then ask again',
  },
  UPDATE_CHECK_TIMEOUT: {
    status: 0,
    title: 'The device did not finish an update check in time',
    hint: "see the device's log; a large download may take longer (--timeout)",
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
