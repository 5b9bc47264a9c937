/**
 * What the device trusts for applications (docs/apps.md §Trust): the tenant's production image
 * key(s) in `trust/image-keys.pem`, written by whoever delivers them (the update agent, from
 * `GET /v1/tenants/current/image-signing-key`), and — only while the device has app development
 * enabled (`trust/app-development.json`) — the developer keys in `trust/developer-keys.pem`.
 * Runtime-signing keys are never app keys and the reverse: they live in other files.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { HeptadError, keyIdOf } from '@heptad/protocol';
import type { Storage } from '../state/storage.ts';

export const IMAGE_KEYS_PATH = 'trust/image-keys.pem';
export const DEVELOPER_KEYS_PATH = 'trust/developer-keys.pem';
export const APP_DEVELOPMENT_PATH = 'trust/app-development.json';
const MAX_KEYS = 16;
const PEM_BLOCK = /-----BEGIN PUBLIC KEY-----[A-Za-z0-9+/=\s]+-----END PUBLIC KEY-----/g;

export interface AppTrust {
  /** every key an app package may be signed by on this device now */
  readonly keys: ReadonlyMap<string, KeyObject>;
  /** key ids of the production image keys (a package signed by none of them is dev-signed) */
  readonly production: ReadonlySet<string>;
  readonly development: boolean;
}

/** One or more SPKI PEM blocks of ECDSA P-256 public keys → key id → key. KEY_FILE_INVALID otherwise. */
export function parsePublicKeys(pem: string): Map<string, KeyObject> {
  const blocks = pem.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0 || blocks.length > MAX_KEYS)
    throw new HeptadError('KEY_FILE_INVALID', `expected 1–${MAX_KEYS} PEM public keys`);
  const keys = new Map<string, KeyObject>();
  for (const block of blocks) {
    let key: KeyObject;
    try {
      key = createPublicKey(block);
    } catch (cause) {
      throw new HeptadError('KEY_FILE_INVALID', 'a public key cannot be read', { cause });
    }
    keys.set(keyIdOf(key), key);
  }
  return keys;
}

const toPem = (keys: Iterable<KeyObject>): Buffer =>
  Buffer.from(
    `${[...keys].map((k) => String(k.export({ type: 'spki', format: 'pem' })).trim()).join('\n')}\n`,
  );

function readKeys(storage: Storage, path: string): Map<string, KeyObject> {
  const bytes = storage.read(path);
  if (bytes === undefined) return new Map();
  try {
    return parsePublicKeys(bytes.toString('utf8'));
  } catch {
    // A damaged key file trusts nothing (fail closed); the next setter rewrites it.
    return new Map();
  }
}

/** Replaces the production image keys (validated first; nothing changes on a bad PEM). */
export function setImageKeys(storage: Storage, pem: string): readonly string[] {
  const keys = parsePublicKeys(pem);
  storage.write(IMAGE_KEYS_PATH, toPem(keys.values()), 0o644);
  return [...keys.keys()];
}

export function isAppDevelopment(storage: Storage): boolean {
  const bytes = storage.read(APP_DEVELOPMENT_PATH);
  if (bytes === undefined) return false;
  try {
    return (JSON.parse(bytes.toString('utf8')) as { enabled?: unknown }).enabled === true;
  } catch {
    return false;
  }
}

/**
 * The device side of the appDevelopment capability: a persisted flag (the service-side capability
 * exists; delivering it signed to the device is the update agent's to add). Disabling it makes
 * dev-signed apps unverifiable at their next start, so the supervisor stops running them.
 */
export function setAppDevelopment(storage: Storage, enabled: boolean): void {
  storage.write(APP_DEVELOPMENT_PATH, Buffer.from(`${JSON.stringify({ enabled })}\n`), 0o644);
}

/** Adds developer public keys (refused unless app development is enabled). Returns their key ids. */
export function addDeveloperKeys(storage: Storage, pem: string): readonly string[] {
  if (!isAppDevelopment(storage))
    throw new HeptadError('APP_SIGNATURE_UNTRUSTED', 'app development is not enabled on this device');
  const added = parsePublicKeys(pem);
  const all = new Map([...readKeys(storage, DEVELOPER_KEYS_PATH), ...added]);
  if (all.size > MAX_KEYS) throw new HeptadError('KEY_FILE_INVALID', `at most ${MAX_KEYS} developer keys`);
  storage.write(DEVELOPER_KEYS_PATH, toPem(all.values()), 0o644);
  return [...added.keys()];
}

export function loadAppTrust(storage: Storage): AppTrust {
  const production = readKeys(storage, IMAGE_KEYS_PATH);
  const development = isAppDevelopment(storage);
  const keys = new Map(production);
  if (development) for (const [id, k] of readKeys(storage, DEVELOPER_KEYS_PATH)) keys.set(id, k);
  return { keys, production: new Set(production.keys()), development };
}
