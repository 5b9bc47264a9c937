// The TPM 2.0 root of trust: the identity key is a restricted ECDSA P-256 signing key derived
// with TPM2_CreatePrimary under the owner hierarchy from a fixed template, so it is the same key
// on every start and nothing is stored on the device. It stays loaded while the root of trust is
// open and is flushed on close (a raw swtpm socket has no resource manager: a transient object
// left behind holds one of the TPM's few object slots until the next reset).

import type { KeyObject } from 'node:crypto';
import {
  decodeSignature,
  HeptadError,
  normalizePcrs,
  PCR_COUNT,
  TPM_GENERATED_VALUE,
  toDerSignature,
} from '@heptad/protocol';
import {
  isTpmCommandFailure,
  type LoadedObject,
  TPM_RH,
  TpmClient,
  type TpmClientOptions,
} from './client.ts';
import { TPM_RC } from './response-codes.ts';
import { IDENTITY_KEY_TEMPLATE } from './templates.ts';
import type { TpmTransport } from './transport.ts';
import type { QuoteResult, RootOfTrust } from './types.ts';

/** TPM2B_DATA holds a TPMT_HA; Heptad's nonces are at most a SHA-512 digest long. */
export const MAX_QUALIFYING_DATA = 64;

export interface TpmRootOfTrustOptions extends TpmClientOptions {
  /** The root of trust owns the transport from now on and closes it on close(). */
  readonly transport: TpmTransport;
}

/**
 * Opens the TPM: TPM2_Startup(CLEAR) unless the platform did it already, then derives the
 * identity key. On failure the transport is closed.
 */
export async function createTpmRootOfTrust(options: TpmRootOfTrustOptions): Promise<TpmRootOfTrust> {
  const client = new TpmClient(options.transport, options);
  try {
    await client.startup();
    const key = await client.createPrimary(TPM_RH.OWNER, IDENTITY_KEY_TEMPLATE);
    return new TpmRootOfTrust(client, key);
  } catch (e) {
    await options.transport.close().catch(() => {});
    throw e;
  }
}

export class TpmRootOfTrust implements RootOfTrust {
  readonly kind = 'tpm' as const;
  readonly #client: TpmClient;
  readonly #key: LoadedObject;
  #closed = false;

  /** Use createTpmRootOfTrust(); `key` must be the loaded identity key. */
  constructor(client: TpmClient, key: LoadedObject) {
    this.#client = client;
    this.#key = key;
  }

  /** The command client, for callers that need a TPM command the interface does not cover. */
  get client(): TpmClient {
    return this.#client;
  }

  /** The transient handle of the identity key (valid until close() or a TPM reset). */
  get identityHandle(): number {
    return this.#key.handle;
  }

  #assertOpen(): void {
    if (this.#closed) throw new HeptadError('ROT_CLOSED');
  }

  async identityPublicKey(): Promise<KeyObject> {
    this.#assertOpen();
    return this.#key.decoded.publicKey;
  }

  /** The TPM2B_PUBLIC (base64) and TPM name (hex) of the identity key. */
  async identityKeyMaterial(): Promise<Record<string, string>> {
    this.#assertOpen();
    return { tpmPublic: this.#key.tpm2bPublic.toString('base64'), name: this.#key.name.toString('hex') };
  }

  async extend(pcr: number, digest: Buffer): Promise<void> {
    this.#assertOpen();
    assertPcrs([pcr]);
    if (!Buffer.isBuffer(digest) || digest.length !== 32) {
      throw new HeptadError('ROT_INPUT_INVALID', 'an extended digest is 32 bytes (sha256)');
    }
    await this.#client.pcrExtend(pcr, digest);
  }

  async readRegisters(pcrs: readonly number[]): Promise<Map<number, Buffer>> {
    this.#assertOpen();
    return this.#client.pcrRead(assertPcrs(pcrs));
  }

  async quote(qualifyingData: Buffer, pcrs: readonly number[]): Promise<QuoteResult> {
    this.#assertOpen();
    if (qualifyingData.length > MAX_QUALIFYING_DATA) {
      throw new HeptadError('ROT_INPUT_INVALID', `qualifying data is at most ${MAX_QUALIFYING_DATA} bytes`);
    }
    return this.#client.quote(this.#key.handle, qualifyingData, assertPcrs(pcrs));
  }

  /**
   * ECDSA P-256 SHA-256 over `data`, DER-encoded. A restricted key signs only a digest the TPM
   * computed itself: TPM2_Hash returns the digest with a hashcheck ticket, TPM2_Sign checks it.
   * Data starting with TPM_GENERATED_VALUE is refused here, as the TPM would refuse it (no
   * ticket): otherwise the identity key could be made to sign a forged quote.
   */
  async sign(data: Buffer): Promise<Buffer> {
    this.#assertOpen();
    if (data.length >= 4 && data.readUInt32BE(0) === TPM_GENERATED_VALUE) {
      throw new HeptadError('ROT_SIGN_INPUT_REFUSED');
    }
    const { digest, validation } = await this.#client.hash(data, TPM_RH.OWNER);
    const signature = await this.#client.sign(this.#key.handle, digest, validation);
    return toDerSignature(decodeSignature(signature));
  }

  /**
   * Flushes the identity key and closes the transport. A key already gone (the TPM was reset
   * since) is fine; other failures are thrown after the transport is closed.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    let failure: unknown;
    try {
      await this.#client.flushContext(this.#key.handle);
    } catch (e) {
      const gone =
        isTpmCommandFailure(e, TPM_RC.HANDLE) ||
        isTpmCommandFailure(e, TPM_RC.REFERENCE_H0) ||
        isTpmCommandFailure(e, TPM_RC.INITIALIZE);
      if (!gone) failure = e;
    }
    await this.#client.transport.close();
    if (failure !== undefined) throw failure;
  }
}

/** PCR indexes 0-23 (a PC-client TPM's PCRs), ascending and de-duplicated. */
function assertPcrs(pcrs: readonly number[]): number[] {
  const sorted = normalizePcrs(pcrs);
  const bad = sorted.find((p) => p >= PCR_COUNT);
  if (bad !== undefined) throw new HeptadError('ROT_INPUT_INVALID', `PCR ${bad} is not 0-${PCR_COUNT - 1}`);
  return sorted;
}
