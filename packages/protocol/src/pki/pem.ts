/**
 * PEM (RFC 7468) for the labels the Heptad PKI writes. The reader takes exactly one block of the
 * expected label and nothing else around it but whitespace, so a second block (a private key
 * pasted after a certificate, say) is never read by accident.
 */
import { HeptadError } from '../errors.ts';

export type PemLabel = 'CERTIFICATE' | 'CERTIFICATE REQUEST' | 'X509 CRL' | 'PRIVATE KEY' | 'PUBLIC KEY';

/** PEM text larger than this is refused before it is decoded. */
export const MAX_PEM_LENGTH = 1 << 20;

/** RFC 7468 §2 "stricttextualmsg": base64 lines of 64 characters, the last one shorter. */
export function toPem(der: Uint8Array, label: PemLabel): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.length).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** The DER inside the one `label` block of `pem`; anything else is PKI_PEM_MALFORMED. */
export function fromPem(pem: string, label: PemLabel): Buffer {
  if (typeof pem !== 'string' || pem.length > MAX_PEM_LENGTH) throw new HeptadError('PKI_PEM_MALFORMED');
  const text = pem.trim();
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  if (!text.startsWith(begin) || !text.endsWith(end)) {
    throw new HeptadError('PKI_PEM_MALFORMED', `expected one "${label}" PEM block`);
  }
  const body = text.slice(begin.length, text.length - end.length).replace(/[\r\n\t ]/g, '');
  // Canonical base64 only: one encoding per DER, and no second block hiding in the body.
  if (body.length === 0 || body.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
    throw new HeptadError('PKI_PEM_MALFORMED', `the "${label}" block is not base64`);
  }
  const der = Buffer.from(body, 'base64');
  if (der.toString('base64') !== body) throw new HeptadError('PKI_PEM_MALFORMED', 'non-canonical base64');
  return der;
}
