/**
 * The platform's runtime-signing public keys, from the device's read-only area
 * (`ro/runtime-signers.pem`, written at manufacture). Only a runtime package signed by one of
 * them is ever installed or booted.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { HeptadError, keyIdOf } from '@heptad/protocol';
import type { Storage } from '../state/storage.ts';

export const RUNTIME_SIGNERS_PATH = 'ro/runtime-signers.pem';
const MAX_SIGNERS = 8;
const PEM_BLOCK = /-----BEGIN PUBLIC KEY-----[A-Za-z0-9+/=\s]+-----END PUBLIC KEY-----/g;

/** Parses one or more SPKI PEM blocks of ECDSA P-256 keys into a key-id → key map. */
export function parseRuntimeSigners(pem: string): Map<string, KeyObject> {
  const blocks = pem.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0 || blocks.length > MAX_SIGNERS)
    throw new HeptadError('BOOT_NO_PLATFORM_KEY', `expected 1–${MAX_SIGNERS} PEM public keys`);
  const keys = new Map<string, KeyObject>();
  for (const block of blocks) {
    let key: KeyObject;
    try {
      key = createPublicKey(block);
    } catch (cause) {
      throw new HeptadError('BOOT_NO_PLATFORM_KEY', 'a runtime-signing key cannot be read', { cause });
    }
    keys.set(keyIdOf(key), key); // IMAGE_KEY_UNSUPPORTED unless ECDSA P-256
  }
  return keys;
}

/** The device's trusted runtime signers; BOOT_NO_PLATFORM_KEY when the read-only area has none. */
export function loadPlatformKeys(storage: Storage): Map<string, KeyObject> {
  const bytes = storage.read(RUNTIME_SIGNERS_PATH);
  if (bytes === undefined)
    throw new HeptadError('BOOT_NO_PLATFORM_KEY', 'the device has no platform runtime-signing key');
  return parseRuntimeSigners(bytes.toString('utf8'));
}
