import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { HeptadError } from '@heptad/protocol';

/**
 * Challenge nonces that need no storage until they are answered: each carries its expiry and a
 * MAC that binds it to the device it was issued to, under a key derived from the service master
 * key (so every service process sharing the store and master key accepts it). Issuing a
 * challenge therefore writes nothing — an anonymous flood of challenges cannot fill the store —
 * and only an answered nonce is recorded (in `used_nonces`, until it expires) to stop replays.
 *
 *     expiresAt u64 ms ‖ device id 32 B ‖ random 16 B ‖ HMAC-SHA256(key, "nonce" ‖ the 56 bytes before)[0..20)
 *
 * The device id travels inside the MAC, so an authentic nonce names its device: another
 * device's nonce reads as "wrong device", forged bytes as "unknown".
 */
export const NONCE_LENGTH = 76;
const DEVICE = 32;
const RANDOM = 16;
const MAC = 20;
const BODY = 8 + DEVICE + RANDOM;

export interface CheckedNonce {
  readonly expiresAt: Date;
}

export class NonceIssuer {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    this.#key = key;
  }

  #mac(body: Buffer): Buffer {
    return createHmac('sha256', this.#key).update('nonce').update(body).digest().subarray(0, MAC);
  }

  issue(deviceId: string, expiresAt: Date): string {
    const body = Buffer.alloc(BODY);
    body.writeBigUInt64BE(BigInt(expiresAt.getTime()), 0);
    Buffer.from(deviceId, 'hex').copy(body, 8);
    randomBytes(RANDOM).copy(body, 8 + DEVICE);
    return Buffer.concat([body, this.#mac(body)]).toString('hex');
  }

  /**
   * Checks a nonce for `deviceId`, in the order the attestation flow asks: issued by this service
   * (ATTEST_NONCE_UNKNOWN), to this device (ATTEST_NONCE_WRONG_DEVICE), still valid
   * (ATTEST_NONCE_EXPIRED). Whether it was used already is the caller's store's question.
   */
  check(nonceHex: string, deviceId: string, now: Date): CheckedNonce {
    const nonce = Buffer.from(nonceHex, 'hex');
    if (nonce.length !== NONCE_LENGTH) throw new HeptadError('ATTEST_NONCE_UNKNOWN');
    const body = nonce.subarray(0, BODY);
    if (!timingSafeEqual(nonce.subarray(BODY), this.#mac(body)))
      throw new HeptadError('ATTEST_NONCE_UNKNOWN');
    if (!body.subarray(8, 8 + DEVICE).equals(Buffer.from(deviceId, 'hex')))
      throw new HeptadError('ATTEST_NONCE_WRONG_DEVICE');
    const expiresAt = new Date(Number(body.readBigUInt64BE(0)));
    if (expiresAt.getTime() <= now.getTime()) throw new HeptadError('ATTEST_NONCE_EXPIRED');
    return { expiresAt };
  }
}
