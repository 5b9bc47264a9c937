// Device identities for the claim benchmark, registered through the operator API
// (POST /v1/devices), the way a factory would, before the measured runs.

import { createHash, generateKeyPairSync } from 'node:crypto';

export interface DeviceKey {
  readonly id: string;
  readonly pem: string;
}

/** A real ECDSA P-256 identity key; id = sha256(DER SPKI), hex. */
export function newDeviceKey(): DeviceKey {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return {
    id: createHash('sha256').update(der).digest('hex'),
    pem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

/** Identities shared by every store under test (each registers them in the same order). */
export class DevicePool {
  readonly keys: DeviceKey[] = [];

  /** Makes sure at least `n` identities exist. */
  ensure(n: number): void {
    while (this.keys.length < n) this.keys.push(newDeviceKey());
  }
}

/** Registers pool devices, in order, in one running service, with a few requests in flight. */
export class Registrar {
  readonly #pool: DevicePool;
  readonly #url: string;
  readonly #operatorToken: string;
  readonly #inFlight: number;
  /** pool[0 .. registered) are registered in this service */
  registered = 0;

  constructor(pool: DevicePool, url: string, operatorToken: string, inFlight = 16) {
    this.#pool = pool;
    this.#url = url;
    this.#operatorToken = operatorToken;
    this.#inFlight = inFlight;
  }

  /** Registers devices until `n` are registered. */
  async registerUpTo(n: number): Promise<void> {
    if (n <= this.registered) return;
    this.#pool.ensure(n);
    let next = this.registered;
    const worker = async () => {
      for (let i = next++; i < n; i = next++) {
        const key = this.#pool.keys[i];
        if (key) await this.#register(key);
      }
    };
    await Promise.all(Array.from({ length: this.#inFlight }, worker));
    this.registered = n;
  }

  async #register(key: DeviceKey): Promise<void> {
    const res = await fetch(`${this.#url}/v1/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.#operatorToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: key.id, publicKey: key.pem, rotKind: 'soft' }),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    if (res.status !== 201) throw new Error(`POST /v1/devices answered ${res.status}: ${text.slice(0, 300)}`);
  }

  /** ids of the registered devices from index `from` on */
  keysFrom(from: number): string[] {
    return this.#pool.keys.slice(from, this.registered).map((k) => k.id);
  }
}
