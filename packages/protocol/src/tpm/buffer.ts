// Big-endian marshalling for TPM 2.0 structures (TPM 2.0 Library: integers are big-endian on
// the wire, a TPM2B is a UINT16 size followed by that many bytes).
//
// Reader never trusts a length it reads: every read past the end, every size field larger than
// the bytes left or than the structure's maximum, and every byte left over after a structure
// throws TPM_STRUCTURE_INVALID. That is what stops a crafted quote or key from steering the
// parser (length overflow, truncation, smuggled trailing data).

import { HeptadError } from '../errors.ts';

/** Throws TPM_STRUCTURE_INVALID naming the structure, the field and the offset. */
export function structureInvalid(what: string, problem: string, offset?: number): HeptadError {
  return new HeptadError(
    'TPM_STRUCTURE_INVALID',
    `${what}: ${problem}${offset === undefined ? '' : ` (at byte ${offset})`}`,
    offset === undefined ? {} : { detail: { structure: what, offset } },
  );
}

/** Appends big-endian integers and TPM2B buffers; `finish()` returns the bytes. */
export class Writer {
  readonly #chunks: Buffer[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  #push(b: Buffer): this {
    this.#chunks.push(b);
    this.#length += b.length;
    return this;
  }

  u8(v: number): this {
    assertUint(v, 0xff, 'u8');
    return this.#push(Buffer.of(v));
  }

  u16(v: number): this {
    assertUint(v, 0xffff, 'u16');
    const b = Buffer.allocUnsafe(2);
    b.writeUInt16BE(v);
    return this.#push(b);
  }

  u32(v: number): this {
    assertUint(v, 0xffffffff, 'u32');
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v);
    return this.#push(b);
  }

  u64(v: bigint | number): this {
    const n = BigInt(v);
    if (n < 0n || n > 0xffffffffffffffffn) throw new RangeError(`u64 out of range: ${n}`);
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(n);
    return this.#push(b);
  }

  bytes(b: Uint8Array): this {
    return this.#push(Buffer.from(b));
  }

  /** A TPM2B: UINT16 size, then the bytes. */
  tpm2b(b: Uint8Array): this {
    return this.u16(b.length).bytes(b);
  }

  /** A TPM2B around a structure: UINT16 size, then what `write` appends. */
  sized(write: (w: Writer) => void): this {
    const inner = new Writer();
    write(inner);
    return this.tpm2b(inner.finish());
  }

  finish(): Buffer {
    return Buffer.concat(this.#chunks, this.#length);
  }
}

function assertUint(v: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${what} out of range: ${v}`);
}

/** Reads big-endian integers and TPM2B buffers from one structure, with bounds checks. */
export class Reader {
  readonly #buf: Buffer;
  readonly #what: string;
  #offset = 0;

  /** `what` names the structure in error messages (e.g. "TPMS_ATTEST"). */
  constructor(buf: Uint8Array, what: string) {
    this.#buf = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    this.#what = what;
  }

  get offset(): number {
    return this.#offset;
  }

  get remaining(): number {
    return this.#buf.length - this.#offset;
  }

  /** An error about this structure at the current offset. */
  invalid(problem: string, offset = this.#offset): HeptadError {
    return structureInvalid(this.#what, problem, offset);
  }

  #take(n: number, field: string): Buffer {
    if (n > this.remaining) {
      throw this.invalid(`${field} needs ${n} bytes, only ${this.remaining} left`);
    }
    const b = this.#buf.subarray(this.#offset, this.#offset + n);
    this.#offset += n;
    return b;
  }

  u8(field: string): number {
    return this.#take(1, field).readUInt8(0);
  }

  u16(field: string): number {
    return this.#take(2, field).readUInt16BE(0);
  }

  u32(field: string): number {
    return this.#take(4, field).readUInt32BE(0);
  }

  u64(field: string): bigint {
    return this.#take(8, field).readBigUInt64BE(0);
  }

  /** `n` raw bytes, copied (the result does not alias the input). */
  bytes(n: number, field: string): Buffer {
    return Buffer.from(this.#take(n, field));
  }

  /** A TPM2B: UINT16 size (at most `max`), then the bytes, copied. */
  tpm2b(field: string, max: number): Buffer {
    const at = this.#offset;
    const size = this.u16(`${field}.size`);
    if (size > max) throw this.invalid(`${field}.size ${size} is larger than the maximum ${max}`, at);
    return this.bytes(size, field);
  }

  /** A TPM2B holding a structure: returns a Reader over exactly its bytes. */
  sized(field: string, max: number, what = field): Reader {
    return new Reader(this.tpm2b(field, max), what);
  }

  /** Refuses bytes left over after the structure. */
  end(): void {
    if (this.remaining !== 0) throw this.invalid(`${this.remaining} trailing byte(s) after the structure`);
  }
}
