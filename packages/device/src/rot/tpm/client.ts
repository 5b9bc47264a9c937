// A TPM 2.0 command client: marshals commands (TPM 2.0 Library Part 1, "Command/Response
// Structure"; Part 3 for each command's parameters), sends them over a TpmTransport, decodes the
// response code and unmarshals the response. Authorization is by password session (TPM_RS_PW,
// Part 1, "Password Authorizations") with the empty password: every object Heptad creates has an empty authValue,
// since the key's protection is that it cannot leave the TPM, not a secret the device would have
// to store next to it.

import {
  type DecodedEccPublic,
  decodeTpm2bPublic,
  type EccPublicArea,
  encodeTpm2bPublic,
  HeptadError,
  MAX_ATTEST_SIZE,
  MAX_DATA_SIZE,
  MAX_DIGEST_SIZE,
  MAX_NAME_SIZE,
  MAX_PUBLIC_SIZE,
  normalizePcrs,
  PCR_BANKS,
  Reader,
  readPcrSelectionList,
  TPM_ALG,
  TPM_ST,
  Writer,
  writePcrSelectionList,
} from '@heptad/protocol';
import { decodeResponseCode, formatResponseCode, RETRYABLE_RCS, TPM_RC } from './response-codes.ts';
import type { TpmTransport } from './transport.ts';

/** TPM_CC command codes (Part 2 §6.5.2, table 12). */
export const TPM_CC = {
  CreatePrimary: 0x131,
  SequenceComplete: 0x13e,
  Startup: 0x144,
  Shutdown: 0x145,
  Create: 0x153,
  Load: 0x157,
  Quote: 0x158,
  SequenceUpdate: 0x15c,
  Sign: 0x15d,
  FlushContext: 0x165,
  ReadPublic: 0x173,
  GetRandom: 0x17b,
  Hash: 0x17d,
  PCR_Read: 0x17e,
  PCR_Extend: 0x182,
  HashSequenceStart: 0x186,
} as const;
export type TpmCommandName = keyof typeof TPM_CC;

/** Permanent handles (Part 2 §7.4, table 28). */
export const TPM_RH = {
  OWNER: 0x40000001,
  NULL: 0x40000007,
  /** The password authorization session (TPM_RS_PW). */
  PW: 0x40000009,
  ENDORSEMENT: 0x4000000b,
  PLATFORM: 0x4000000c,
} as const;

/** TPM_SU (Part 2 §6.5, table 20). */
export const TPM_SU = { CLEAR: 0x0000, STATE: 0x0001 } as const;

/** MAX_DIGEST_BUFFER: the largest TPM2B_MAX_BUFFER every PC-client TPM accepts. */
export const MAX_DIGEST_BUFFER = 1024;
/** TPM2B sizes of outputs the client skips over; generous, they are checked against the bytes. */
const MAX_CREATION_DATA_SIZE = 2048;
const MAX_PRIVATE_SIZE = 2048;

export const DEFAULT_RETRIES = 5;
export const DEFAULT_RETRY_DELAY_MS = 20;

export interface TpmClientOptions {
  /** How often a command answered with TPM_RC_RETRY, _YIELDED or _TESTING is sent again. */
  readonly retries?: number;
  /** Wait before the n-th retry: n × this. */
  readonly retryDelayMs?: number;
  /** Injected for tests; defaults to a timer. */
  readonly sleep?: (ms: number) => Promise<void>;
}

interface CommandRequest {
  readonly handles?: readonly number[];
  /** The password of each handle that needs authorization, in handle order. */
  readonly auths?: readonly Uint8Array[];
  readonly params?: Buffer;
  /** How many handles the response carries before its parameters. */
  readonly responseHandles?: number;
}

interface CommandResponse {
  readonly handles: number[];
  readonly params: Reader;
}

export interface LoadedObject {
  readonly handle: number;
  /** TPM2B_PUBLIC as returned by the TPM (size prefix included). */
  readonly tpm2bPublic: Buffer;
  readonly decoded: DecodedEccPublic;
  readonly name: Buffer;
}

/** A hashcheck ticket (TPMT_TK_HASHCHECK, Part 2 §10.7.6), marshalled, for TPM2_Sign. */
export interface HashResult {
  readonly digest: Buffer;
  readonly validation: Buffer;
}

const EMPTY = Buffer.alloc(0);
const EMPTY_AUTH = [EMPTY];
const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Error of a command the TPM answered with a non-zero response code. */
export function isTpmCommandFailure(e: unknown, base?: number): e is HeptadError {
  return (
    e instanceof HeptadError &&
    e.code === 'TPM_COMMAND_FAILED' &&
    (base === undefined || e.detail['base'] === base)
  );
}

export class TpmClient {
  readonly #transport: TpmTransport;
  readonly #retries: number;
  readonly #retryDelayMs: number;
  readonly #sleep: (ms: number) => Promise<void>;

  constructor(transport: TpmTransport, options: TpmClientOptions = {}) {
    this.#transport = transport;
    this.#retries = options.retries ?? DEFAULT_RETRIES;
    this.#retryDelayMs = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
    this.#sleep = options.sleep ?? defaultSleep;
  }

  get transport(): TpmTransport {
    return this.#transport;
  }

  /**
   * Frames and sends one command (tag, commandSize, commandCode, handles, then for
   * TPM_ST_SESSIONS the authorizationSize and one password session per authorized handle, then
   * the parameters), retrying the warnings that ask for it, and splits the response.
   */
  async execute(command: TpmCommandName, request: CommandRequest = {}): Promise<CommandResponse> {
    const auths = request.auths ?? [];
    const tag = auths.length > 0 ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS;
    const body = new Writer();
    for (const h of request.handles ?? []) body.u32(h);
    if (auths.length > 0) {
      const area = new Writer();
      // TPMS_AUTH_COMMAND (Part 2 §10.13.2): sessionHandle, nonceCaller, sessionAttributes, hmac.
      for (const password of auths) area.u32(TPM_RH.PW).tpm2b(EMPTY).u8(0).tpm2b(password);
      body.u32(area.length).bytes(area.finish());
    }
    if (request.params) body.bytes(request.params);
    const header = new Writer()
      .u16(tag)
      .u32(10 + body.length)
      .u32(TPM_CC[command]);
    const bytes = Buffer.concat([header.finish(), body.finish()]);

    for (let attempt = 0; ; attempt++) {
      const response = await this.#transport.transmit(bytes);
      const r = new Reader(response, `TPM2_${command} response`);
      const responseTag = r.u16('tag');
      const size = r.u32('responseSize');
      const rc = r.u32('responseCode');
      if (size !== response.length) throw r.invalid(`responseSize ${size} but ${response.length} bytes`, 2);
      if (rc !== TPM_RC.SUCCESS) {
        if (RETRYABLE_RCS.has(rc) && attempt < this.#retries) {
          await this.#sleep(this.#retryDelayMs * (attempt + 1));
          continue;
        }
        throw commandFailed(command, rc);
      }
      if (responseTag !== tag) {
        throw r.invalid(`tag 0x${responseTag.toString(16)}, sent 0x${tag.toString(16)}`, 0);
      }
      const handles: number[] = [];
      for (let i = 0; i < (request.responseHandles ?? 0); i++) handles.push(r.u32(`handle[${i}]`));
      if (tag === TPM_ST.NO_SESSIONS) {
        return {
          handles,
          params: new Reader(r.bytes(r.remaining, 'parameters'), `TPM2_${command} parameters`),
        };
      }
      // With sessions: parameterSize, the parameters, then one TPMS_AUTH_RESPONSE per session.
      const parameterSize = r.u32('parameterSize');
      const params = new Reader(r.bytes(parameterSize, 'parameters'), `TPM2_${command} parameters`);
      // TPMS_AUTH_RESPONSE (Part 2 §10.13.3) per session: nonceTPM, sessionAttributes, hmac.
      for (let i = 0; i < auths.length; i++) {
        r.tpm2b(`auth[${i}].nonce`, MAX_DIGEST_SIZE);
        r.u8(`auth[${i}].sessionAttributes`);
        r.tpm2b(`auth[${i}].hmac`, MAX_DIGEST_SIZE);
      }
      r.end();
      return { handles, params };
    }
  }

  /**
   * TPM2_Startup(CLEAR) (Part 3 §9.3). Resolves true when this call started the TPM, false when
   * it was started already (TPM_RC_INITIALIZE: the platform's firmware did it, or swtpm's
   * startup-clear flag).
   */
  async startup(): Promise<boolean> {
    try {
      await this.execute('Startup', { params: new Writer().u16(TPM_SU.CLEAR).finish() });
      return true;
    } catch (e) {
      if (isTpmCommandFailure(e, TPM_RC.INITIALIZE)) return false;
      throw e;
    }
  }

  /** TPM2_Shutdown(CLEAR) (Part 3 §9.4): an orderly shutdown before power goes. */
  async shutdown(): Promise<void> {
    await this.execute('Shutdown', { params: new Writer().u16(TPM_SU.CLEAR).finish() });
  }

  /** TPM2_GetRandom (Part 3 §16.1), as many calls as it takes for `count` bytes. */
  async getRandom(count: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let have = 0;
    while (have < count) {
      const want = Math.min(count - have, 32);
      const { params } = await this.execute('GetRandom', { params: new Writer().u16(want).finish() });
      const bytes = params.tpm2b('randomBytes', MAX_DIGEST_SIZE);
      params.end();
      if (bytes.length === 0) throw params.invalid('the TPM returned no random bytes');
      parts.push(bytes);
      have += bytes.length;
    }
    return Buffer.concat(parts).subarray(0, count);
  }

  /**
   * TPM2_CreatePrimary (Part 3 §24.1) under `hierarchy` from an ECC template. A primary key is
   * derived from the hierarchy's seed and the template, so the same template gives the same
   * key on every call until the hierarchy is cleared: nothing needs to be stored.
   */
  async createPrimary(hierarchy: number, template: EccPublicArea): Promise<LoadedObject> {
    const w = new Writer().sized((s) => s.tpm2b(EMPTY).tpm2b(EMPTY)); // inSensitive: no auth, no data
    w.bytes(encodeTpm2bPublic(template)).tpm2b(EMPTY); // inPublic, outsideInfo
    writePcrSelectionList(w, []); // creationPCR
    const { handles, params } = await this.execute('CreatePrimary', {
      handles: [hierarchy],
      auths: EMPTY_AUTH,
      params: w.finish(),
      responseHandles: 1,
    });
    const tpm2bPublic = readTpm2bPublicBytes(params);
    skipCreationOutputs(params);
    const name = params.tpm2b('name', MAX_NAME_SIZE);
    params.end();
    return loaded(handles[0] ?? 0, tpm2bPublic, name);
  }

  /** TPM2_Create (Part 3 §12.1): a child key of `parent`; returns its TPM2B_PRIVATE and TPM2B_PUBLIC. */
  async create(
    parent: number,
    template: EccPublicArea,
  ): Promise<{ tpm2bPrivate: Buffer; tpm2bPublic: Buffer }> {
    const w = new Writer().sized((s) => s.tpm2b(EMPTY).tpm2b(EMPTY));
    w.bytes(encodeTpm2bPublic(template)).tpm2b(EMPTY);
    writePcrSelectionList(w, []);
    const { params } = await this.execute('Create', {
      handles: [parent],
      auths: EMPTY_AUTH,
      params: w.finish(),
    });
    const tpm2bPrivate = new Writer().tpm2b(params.tpm2b('outPrivate', MAX_PRIVATE_SIZE)).finish();
    const tpm2bPublic = readTpm2bPublicBytes(params);
    skipCreationOutputs(params);
    params.end();
    return { tpm2bPrivate, tpm2bPublic };
  }

  /** TPM2_Load (Part 3 §12.2): loads a key made by create() under the same parent. */
  async load(parent: number, tpm2bPrivate: Buffer, tpm2bPublic: Buffer): Promise<LoadedObject> {
    const { handles, params } = await this.execute('Load', {
      handles: [parent],
      auths: EMPTY_AUTH,
      params: Buffer.concat([tpm2bPrivate, tpm2bPublic]),
      responseHandles: 1,
    });
    const name = params.tpm2b('name', MAX_NAME_SIZE);
    params.end();
    return loaded(handles[0] ?? 0, tpm2bPublic, name);
  }

  /** TPM2_PCR_Extend (Part 3 §22.2) of one sha256 digest into `pcr`. */
  async pcrExtend(pcr: number, digest: Uint8Array): Promise<void> {
    // TPML_DIGEST_VALUES: count, then TPMT_HA { hashAlg, digest }.
    const params = new Writer().u32(1).u16(TPM_ALG.SHA256).bytes(digest).finish();
    const { params: out } = await this.execute('PCR_Extend', { handles: [pcr], auths: EMPTY_AUTH, params });
    out.end();
  }

  /**
   * TPM2_PCR_Read (Part 3 §22.4) of the sha256 bank. A TPM returns at most 8 digests per call
   * (TPML_DIGEST), so this asks again for whatever is still missing.
   */
  async pcrRead(pcrs: readonly number[]): Promise<Map<number, Buffer>> {
    const values = new Map<number, Buffer>();
    let missing = normalizePcrs(pcrs);
    while (missing.length > 0) {
      const w = new Writer();
      writePcrSelectionList(w, [{ hash: 'sha256', pcrs: missing }]);
      const { params } = await this.execute('PCR_Read', { params: w.finish() });
      params.u32('pcrUpdateCounter');
      const selected = readPcrSelectionList(params, 'pcrSelectionOut');
      const count = params.u32('pcrValues.count');
      if (count > 8) throw params.invalid(`pcrValues.count ${count} is larger than a TPML_DIGEST holds (8)`);
      const digests: Buffer[] = [];
      for (let i = 0; i < count; i++) digests.push(params.tpm2b(`pcrValues[${i}]`, MAX_DIGEST_SIZE));
      params.end();
      const got = selected.filter((s) => s.hashAlg === PCR_BANKS.sha256).flatMap((s) => s.pcrs);
      if (got.length === 0 || got.length !== digests.length) {
        throw new HeptadError(
          'TPM_COMMAND_FAILED',
          `TPM2_PCR_Read returned no sha256 value for PCR(s) ${missing.join(',')}: is the sha256 bank allocated?`,
        );
      }
      got.forEach((pcr, i) => {
        const d = digests[i];
        if (d && missing.includes(pcr)) values.set(pcr, d);
      });
      missing = missing.filter((p) => !values.has(p));
    }
    return values;
  }

  /**
   * TPM2_Quote (Part 3 §18.4) with the key's own scheme (inScheme TPM_ALG_NULL) over the sha256
   * PCRs. Returns the raw TPMS_ATTEST (without the TPM2B size) and the raw TPMT_SIGNATURE.
   */
  async quote(
    key: number,
    qualifyingData: Uint8Array,
    pcrs: readonly number[],
  ): Promise<{ attest: Buffer; signature: Buffer }> {
    const w = new Writer().tpm2b(qualifyingData).u16(TPM_ALG.NULL);
    writePcrSelectionList(w, [{ hash: 'sha256', pcrs }]);
    const { params } = await this.execute('Quote', { handles: [key], auths: EMPTY_AUTH, params: w.finish() });
    const attest = params.tpm2b('quoted', MAX_ATTEST_SIZE);
    const signature = params.bytes(params.remaining, 'signature');
    return { attest, signature };
  }

  /**
   * A SHA-256 digest of `data` computed by the TPM with a hashcheck ticket for `hierarchy`:
   * TPM2_Hash (Part 3 §15.4) for up to MAX_DIGEST_BUFFER bytes, else a hash sequence (§17).
   * The ticket says the TPM saw the whole message, which a restricted key needs before it signs
   * a digest; the TPM leaves the ticket empty when data starts with TPM_GENERATED_VALUE.
   */
  async hash(data: Uint8Array, hierarchy: number = TPM_RH.OWNER): Promise<HashResult> {
    if (data.length <= MAX_DIGEST_BUFFER) {
      const params = new Writer().tpm2b(data).u16(TPM_ALG.SHA256).u32(hierarchy).finish();
      const { params: out } = await this.execute('Hash', { params });
      return readHashResult(out);
    }
    const start = new Writer().tpm2b(EMPTY).u16(TPM_ALG.SHA256).finish();
    const { handles } = await this.execute('HashSequenceStart', { params: start, responseHandles: 1 });
    const sequence = handles[0] ?? 0;
    let offset = 0;
    try {
      for (; data.length - offset > MAX_DIGEST_BUFFER; offset += MAX_DIGEST_BUFFER) {
        const chunk = data.subarray(offset, offset + MAX_DIGEST_BUFFER);
        const { params } = await this.execute('SequenceUpdate', {
          handles: [sequence],
          auths: EMPTY_AUTH,
          params: new Writer().tpm2b(chunk).finish(),
        });
        params.end();
      }
    } catch (e) {
      // A sequence object holds a slot until completed or flushed.
      await this.flushContext(sequence).catch(() => {});
      throw e;
    }
    const { params } = await this.execute('SequenceComplete', {
      handles: [sequence],
      auths: EMPTY_AUTH,
      params: new Writer().tpm2b(data.subarray(offset)).u32(hierarchy).finish(),
    });
    return readHashResult(params);
  }

  /** TPM2_Sign (Part 3 §20.2) of a digest with the key's own scheme; returns the raw TPMT_SIGNATURE. */
  async sign(key: number, digest: Uint8Array, validation: Buffer): Promise<Buffer> {
    const params = new Writer().tpm2b(digest).u16(TPM_ALG.NULL).bytes(validation).finish();
    const { params: out } = await this.execute('Sign', { handles: [key], auths: EMPTY_AUTH, params });
    return out.bytes(out.remaining, 'signature');
  }

  /** TPM2_ReadPublic (Part 3 §12.4). */
  async readPublic(handle: number): Promise<{ tpm2bPublic: Buffer; name: Buffer; qualifiedName: Buffer }> {
    const { params } = await this.execute('ReadPublic', { handles: [handle] });
    const tpm2bPublic = readTpm2bPublicBytes(params);
    const name = params.tpm2b('name', MAX_NAME_SIZE);
    const qualifiedName = params.tpm2b('qualifiedName', MAX_NAME_SIZE);
    params.end();
    return { tpm2bPublic, name, qualifiedName };
  }

  /** TPM2_FlushContext (Part 3 §28.4): frees a transient object or session. */
  async flushContext(handle: number): Promise<void> {
    const { params } = await this.execute('FlushContext', { params: new Writer().u32(handle).finish() });
    params.end();
  }
}

function commandFailed(command: TpmCommandName, rc: number): HeptadError {
  const { base, name } = decodeResponseCode(rc);
  return new HeptadError(
    'TPM_COMMAND_FAILED',
    `TPM2_${command} failed: ${name}, rc ${formatResponseCode(rc)}`,
    {
      detail: { command: `TPM2_${command}`, rc, base, name },
    },
  );
}

/** A TPM2B_PUBLIC from a response, returned with its size prefix. */
function readTpm2bPublicBytes(r: Reader): Buffer {
  return new Writer().tpm2b(r.tpm2b('outPublic', MAX_PUBLIC_SIZE)).finish();
}

/** creationData, creationHash and creationTicket of CreatePrimary / Create: not used here. */
function skipCreationOutputs(r: Reader): void {
  r.tpm2b('creationData', MAX_CREATION_DATA_SIZE);
  r.tpm2b('creationHash', MAX_DIGEST_SIZE);
  r.u16('creationTicket.tag');
  r.u32('creationTicket.hierarchy');
  r.tpm2b('creationTicket.digest', MAX_DIGEST_SIZE);
}

function readHashResult(r: Reader): HashResult {
  const digest = r.tpm2b('outHash', MAX_DIGEST_SIZE);
  const tag = r.u16('validation.tag');
  const hierarchy = r.u32('validation.hierarchy');
  const ticket = r.tpm2b('validation.digest', MAX_DATA_SIZE);
  r.end();
  return { digest, validation: new Writer().u16(tag).u32(hierarchy).tpm2b(ticket).finish() };
}

function loaded(handle: number, tpm2bPublic: Buffer, name: Buffer): LoadedObject {
  const decoded = decodeTpm2bPublic(tpm2bPublic);
  // The TPM's name must be the one computed from the public area it returned; a mismatch means
  // the response was corrupted or the TPM is not what it claims.
  if (!decoded.name.equals(name)) {
    throw new HeptadError(
      'TPM_STRUCTURE_INVALID',
      'the name the TPM returned does not match its public area',
    );
  }
  return { handle, tpm2bPublic, decoded, name };
}
