import 'reflect-metadata';
import { createPrivateKey, type KeyObject, webcrypto, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface CertificateAuthority {
  readonly certPem: string;
  /** PKCS#8 DER of the CA private key; callers store it encrypted (see the service KeyStore). */
  readonly keyPkcs8: Buffer;
}

export interface CreateCaOptions {
  readonly commonName: string;
  readonly now: Date;
  readonly validityDays: number;
  /** Path length constraint; 0 means the CA signs only leaf certificates. */
  readonly pathLength?: number;
}

async function generateP256(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

function serial(): string {
  // 16 random bytes, top bit cleared so the DER INTEGER stays positive (RFC 5280 §4.1.2.2).
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = (b[0] ?? 0) & 0x7f;
  return Buffer.from(b).toString('hex');
}

export async function createCertificateAuthority(options: CreateCaOptions): Promise<CertificateAuthority> {
  if (!(options.validityDays > 0)) throw new RangeError('validityDays must be positive');
  const keys = await generateP256();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: [{ CN: [options.commonName] }],
    notBefore: new Date(options.now.getTime() - 60_000),
    notAfter: new Date(options.now.getTime() + options.validityDays * 86_400_000),
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, options.pathLength ?? 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { certPem: cert.toString('pem'), keyPkcs8: pkcs8 };
}

export interface ServerCertificateOptions {
  readonly ca: CertificateAuthority;
  /** DNS names and IP addresses the server answers on. */
  readonly hosts: readonly string[];
  readonly now: Date;
  readonly validityDays: number;
}

/** Issues a TLS server certificate (serverAuth) for `hosts`; returns the leaf certificate and its key as PEM. */
export async function issueServerCertificate(
  options: ServerCertificateOptions,
): Promise<{ certPem: string; keyPem: string }> {
  if (options.hosts.length === 0) throw new RangeError('a server certificate needs at least one host');
  for (const h of options.hosts) {
    if (
      !isIP(h) &&
      !/^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(
        h,
      )
    ) {
      throw new RangeError(`"${h}" is not a DNS name or IP address`);
    }
  }
  if (!(options.validityDays > 0)) throw new RangeError('validityDays must be positive');
  const caCert = new x509.X509Certificate(options.ca.certPem);
  const caKey = await webcrypto.subtle.importKey('pkcs8', options.ca.keyPkcs8, EC_P256, false, ['sign']);
  const keys = await generateP256();
  const names = options.hosts.map((h) =>
    isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h },
  );
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: [{ CN: [options.hosts[0] ?? 'localhost'] }],
    issuer: caCert.subject,
    notBefore: new Date(options.now.getTime() - 60_000),
    notAfter: new Date(options.now.getTime() + options.validityDays * 86_400_000),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })
    .export({ format: 'pem', type: 'pkcs8' })
    .toString();
  return { certPem: cert.toString('pem'), keyPem };
}

export function toPrivateKey(pkcs8: Buffer): KeyObject {
  return createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
}

/** Days until a PEM certificate expires (negative when expired). */
export function daysUntilExpiry(certPem: string, now: Date): number {
  return (new Date(new X509Certificate(certPem).validTo).getTime() - now.getTime()) / 86_400_000;
}
