import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { HeptadError } from '@heptad/protocol';

/**
 * Service private keys at rest: AES-256-GCM under a 32-byte master key. The master key comes
 * from HEPTAD_MASTER_KEY (base64) when set — keep it in a secret manager — or else from
 * DATA/master-key (mode 0600), created on first start for the embedded default.
 */
const MAGIC = Buffer.from('HPK1');

export class KeyStore {
  readonly #master: Buffer;

  constructor(masterKey: Buffer) {
    if (masterKey.length !== 32) throw new HeptadError('CONFIG_INVALID', 'the master key must be 32 bytes');
    this.#master = masterKey;
  }

  /** A 32-byte key for one purpose, derived from the master key (HKDF-SHA256, RFC 5869). */
  derive(purpose: string): Buffer {
    return Buffer.from(hkdfSync('sha256', this.#master, Buffer.alloc(0), `heptad:${purpose}`, 32));
  }

  seal(plain: Buffer, label: string): Buffer {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.#master, iv);
    c.setAAD(Buffer.from(label));
    const body = Buffer.concat([c.update(plain), c.final()]);
    return Buffer.concat([MAGIC, iv, c.getAuthTag(), body]);
  }

  open(sealed: Buffer, label: string): Buffer {
    if (sealed.length < 32 || !sealed.subarray(0, 4).equals(MAGIC)) {
      throw new HeptadError('CONFIG_INVALID', `sealed key "${label}" is not in the expected format`);
    }
    const d = createDecipheriv('aes-256-gcm', this.#master, sealed.subarray(4, 16));
    d.setAAD(Buffer.from(label));
    d.setAuthTag(sealed.subarray(16, 32));
    try {
      return Buffer.concat([d.update(sealed.subarray(32)), d.final()]);
    } catch (cause) {
      throw new HeptadError('CONFIG_INVALID', `sealed key "${label}" does not open with this master key`, {
        cause,
      });
    }
  }
}
