import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
} from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  encodeEcdsaSignature,
  encodeQuoteAttest,
  extendPcrValue,
  HeptadError,
  normalizePcrs,
  pcrDigest,
  writeFileAtomic,
} from '@heptad/protocol';
import type { QuoteResult, RootOfTrust } from '../root-of-trust.ts';

export const SOFT_IDENTITY_KEY_FILE = 'identity-key.pem';
export const SOFT_REGISTERS_FILE = 'soft-registers.json';
const REGISTER_COUNT = 24;
/** "HPTD": what the soft root of trust reports as its firmware version. */
const SOFT_FIRMWARE_VERSION = 0x48505444n;

interface RegisterFile {
  resetCount: number;
  values: string[];
}

/**
 * A software root of trust for simulation and development. Same evidence as a TPM — registers
 * with TPM extend semantics and TPMS_ATTEST quotes signed by the identity key — but the key is a
 * 0600 file in the device state and the registers live in a file, so it protects nothing
 * against someone who can read the state folder. Every attestation reports it as `soft`.
 */
export class SoftRootOfTrust implements RootOfTrust {
  readonly kind = 'soft' as const;
  readonly #dir: string;
  #key: KeyObject | undefined;

  /** `dir`: the device state's secrets folder. */
  constructor(dir: string) {
    this.#dir = dir;
  }

  /** Creates the identity key (once, at manufacture); refuses to overwrite one. */
  static create(dir: string): SoftRootOfTrust {
    const path = join(dir, SOFT_IDENTITY_KEY_FILE);
    if (existsSync(path)) throw new HeptadError('DEVICE_STATE_EXISTS', 'an identity key exists already');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    writeFileAtomic(path, privateKey.export({ format: 'pem', type: 'pkcs8' }), 0o600);
    const rot = new SoftRootOfTrust(dir);
    rot.reset();
    return rot;
  }

  #privateKey(): KeyObject {
    if (!this.#key) {
      try {
        this.#key = createPrivateKey(readFileSync(join(this.#dir, SOFT_IDENTITY_KEY_FILE)));
      } catch (cause) {
        throw new HeptadError('DEVICE_STATE_INVALID', 'the soft identity key cannot be read', { cause });
      }
    }
    return this.#key;
  }

  #readRegisters(): RegisterFile {
    const path = join(this.#dir, SOFT_REGISTERS_FILE);
    if (!existsSync(path)) return { resetCount: 0, values: Array(REGISTER_COUNT).fill('00'.repeat(32)) };
    try {
      const f = JSON.parse(readFileSync(path, 'utf8')) as RegisterFile;
      if (!Array.isArray(f.values) || f.values.length !== REGISTER_COUNT) throw new Error('shape');
      return f;
    } catch (cause) {
      throw new HeptadError('DEVICE_STATE_INVALID', 'the soft registers file is damaged', { cause });
    }
  }

  /** A reboot: every register back to zero (the boot chain measures afresh). */
  reset(): void {
    const current = existsSync(join(this.#dir, SOFT_REGISTERS_FILE)) ? this.#readRegisters().resetCount : -1;
    writeFileAtomic(
      join(this.#dir, SOFT_REGISTERS_FILE),
      JSON.stringify({ resetCount: current + 1, values: Array(REGISTER_COUNT).fill('00'.repeat(32)) }),
      0o600,
    );
  }

  async identityPublicKey(): Promise<KeyObject> {
    return createPublicKey(this.#privateKey());
  }

  async identityKeyMaterial(): Promise<Record<string, string>> {
    return {};
  }

  async extend(pcr: number, digest: Buffer): Promise<void> {
    if (!Number.isInteger(pcr) || pcr < 0 || pcr >= REGISTER_COUNT || digest.length !== 32) {
      throw new HeptadError('DEVICE_STATE_INVALID', 'extend needs a register 0–23 and a 32-byte digest');
    }
    const f = this.#readRegisters();
    f.values[pcr] = extendPcrValue(Buffer.from(f.values[pcr] ?? '', 'hex'), digest).toString('hex');
    writeFileAtomic(join(this.#dir, SOFT_REGISTERS_FILE), JSON.stringify(f), 0o600);
  }

  async readRegisters(pcrs: readonly number[]): Promise<Map<number, Buffer>> {
    const f = this.#readRegisters();
    return new Map(normalizePcrs(pcrs).map((p) => [p, Buffer.from(f.values[p] ?? '', 'hex')]));
  }

  async quote(qualifyingData: Buffer, pcrs: readonly number[]): Promise<QuoteResult> {
    const selected = normalizePcrs(pcrs);
    const f = this.#readRegisters();
    const values = selected.map((p) => Buffer.from(f.values[p] ?? '', 'hex'));
    const spki = (await this.identityPublicKey()).export({ format: 'der', type: 'spki' });
    const attest = encodeQuoteAttest({
      // A TPM name is nameAlg ‖ H(public area); the soft key's "name" hashes its SPKI instead.
      qualifiedSigner: Buffer.concat([Buffer.from([0x00, 0x0b]), createHash('sha256').update(spki).digest()]),
      extraData: qualifyingData,
      clock: BigInt(Math.floor(performance.timeOrigin + performance.now())),
      resetCount: f.resetCount,
      restartCount: 0,
      safe: true,
      firmwareVersion: SOFT_FIRMWARE_VERSION,
      pcrSelection: { hash: 'sha256', pcrs: selected },
      pcrDigest: pcrDigest(values),
    });
    const der = sign('sha256', attest, this.#privateKey());
    return { attest, signature: encodeEcdsaSignature(der) };
  }

  async sign(data: Buffer): Promise<Buffer> {
    return sign('sha256', data, this.#privateKey());
  }

  async close(): Promise<void> {
    this.#key = undefined;
  }
}
