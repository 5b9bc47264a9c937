/**
 * Host names, IP literals and `*.domain` wildcards of `AllowedConnections`
 * (docs/formats/app-manifest.md §4), and the one matching rule the supervisor applies before it
 * opens a connection for an app. Pure: no DNS, no sockets. The supervisor resolves a granted name
 * itself and connects only to the addresses it resolved (so the app never chooses the address).
 */
/** §4.1: RFC 1035 limits, without the trailing dot. */
export const MAX_HOST_NAME_LENGTH = 253;
export const MAX_HOST_LABEL_LENGTH = 63;

/**
 * §4.3: second-level labels that, under a two-letter country code, are almost always public
 * suffixes (`co.uk`, `com.au`, `ac.jp`, `gov.br`). A cheap partial guard against `*.co.uk`; it is
 * not the Public Suffix List and does not know private suffixes such as `github.io`.
 */
export const PUBLIC_SECOND_LEVEL_LABELS: ReadonlySet<string> = new Set([
  'ac',
  'co',
  'com',
  'edu',
  'go',
  'gob',
  'gouv',
  'gov',
  'govt',
  'ltd',
  'mil',
  'ne',
  'net',
  'nhs',
  'nic',
  'or',
  'org',
  'plc',
  'sch',
]);

/** A normalized host: a lowercase DNS name without trailing dot, or a canonical IP literal. */
export type NormalizedHost =
  | { readonly kind: 'name'; readonly value: string }
  | { readonly kind: 'ipv4'; readonly value: string }
  | { readonly kind: 'ipv6'; readonly value: string };

/** One `AllowedConnections` entry, parsed. `port: null` allows every port. */
export type HostRule =
  | { readonly kind: 'name' | 'ipv4' | 'ipv6'; readonly host: string; readonly port: number | null }
  /** `*.suffix`: one or more labels in front of `suffix` (never `suffix` itself). */
  | { readonly kind: 'wildcard'; readonly suffix: string; readonly port: number | null };

const LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
const DOTTED_DECIMAL = /^(?:0|[1-9]\d{0,2})(?:\.(?:0|[1-9]\d{0,2})){3}$/;
const PORT = /^[1-9]\d{0,4}$/;
const IPV4_MAPPED = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/**
 * A DNS host name (lowercased, one trailing dot removed) or why it is not one. ASCII only:
 * a Unicode name could be a confusable of another (Cyrillic "а" for Latin "a"); an
 * internationalized name is written in its `xn--` form, which shows what it is. A name whose
 * last label is a number (all digits, or 0x and hex) is refused: resolvers and URL parsers read
 * `127.1`, `0x7f.0.0.1` or `2130706433` as IPv4 addresses (WHATWG URL, "ends in a number").
 */
export function hostNameProblem(name: string): string | undefined {
  // Before lowercasing: toLowerCase folds some non-ASCII characters into ASCII (KELVIN SIGN
  // U+212A → "k"), which would make "\u212Aiosk.example.com" match "kiosk.example.com".
  if (!/^[\x20-\x7e]*$/.test(name)) return 'must be ASCII (write an internationalized name in its xn-- form)';
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  if (n.length === 0) return 'is empty';
  if (n.length > MAX_HOST_NAME_LENGTH) return `is longer than ${MAX_HOST_NAME_LENGTH} characters`;
  const labels = n.toLowerCase().split('.');
  for (const label of labels) {
    if (label.length === 0) return 'has an empty label';
    if (label.length > MAX_HOST_LABEL_LENGTH)
      return `has a label longer than ${MAX_HOST_LABEL_LENGTH} characters`;
    if (!LABEL.test(label))
      return 'has a label with a character outside [a-z0-9-], or starting or ending with "-"';
  }
  const last = labels[labels.length - 1] ?? '';
  if (/^\d+$/.test(last) || /^0x[0-9a-f]*$/.test(last)) return 'ends in a number (is it an IPv4 address?)';
  return undefined;
}

const IPV6_CHARS = /^[0-9A-Fa-f:.]+$/;

/**
 * Canonical IPv6 text (RFC 5952 via the WHATWG URL serializer, a global: no node:net import in
 * code every runtime loads), without brackets, or undefined. Zone ids (fe80::1%eth0) name an
 * interface of this device, never a destination, and fail the character check.
 */
function canonicalIpv6(address: string): string | undefined {
  if (!address.includes(':') || !IPV6_CHARS.test(address)) return undefined;
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

/**
 * An IP literal in its one spelling: IPv4 dotted decimal without leading zeros (`010.0.0.1` is
 * 8.0.0.1 to inet_aton), IPv6 compressed lowercase, and an IPv4-mapped IPv6 address
 * (`::ffff:10.0.0.1`) as the IPv4 address it reaches on a dual-stack socket.
 */
function normalizeIp(text: string): NormalizedHost | undefined {
  if (DOTTED_DECIMAL.test(text)) {
    return text.split('.').every((o) => Number(o) <= 255) ? { kind: 'ipv4', value: text } : undefined;
  }
  const v6 = canonicalIpv6(text);
  if (v6 === undefined) return undefined;
  const mapped = IPV4_MAPPED.exec(v6);
  if (mapped) {
    const hi = Number.parseInt(mapped[1] ?? '', 16);
    const lo = Number.parseInt(mapped[2] ?? '', 16);
    return { kind: 'ipv4', value: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}` };
  }
  return { kind: 'ipv6', value: v6 };
}

/**
 * The host an app asks for, in the form rules are matched in: a lowercase name without its
 * trailing dot, or a canonical IP literal (IPv6 with or without brackets). Undefined when it is
 * none of these: non-ASCII, malformed, an IPv6 zone id, a numeric form like `127.1`.
 */
export function normalizeHost(host: string): NormalizedHost | undefined {
  if (typeof host !== 'string' || host.length > MAX_HOST_NAME_LENGTH + 2) return undefined;
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare !== host) {
    const v6 = normalizeIp(bare);
    return v6 !== undefined && bare.includes(':') ? v6 : undefined;
  }
  const ip = normalizeIp(host);
  if (ip !== undefined) return ip;
  if (hostNameProblem(host) !== undefined) return undefined;
  const lower = host.toLowerCase();
  return { kind: 'name', value: lower.endsWith('.') ? lower.slice(0, -1) : lower };
}

function portOf(text: string): number | undefined {
  if (!PORT.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

/**
 * Parses one `AllowedConnections` entry (§4): `host`, `host:port`, `IPv4`, `IPv4:port`, `IPv6`,
 * `[IPv6]`, `[IPv6]:port`, `*.domain`, `*.domain:port`. Returns the rule or the problem.
 */
export function parseHostRule(entry: string): HostRule | string {
  let hostPart = entry;
  let port: number | null = null;
  if (entry.startsWith('[')) {
    const close = entry.indexOf(']');
    if (close === -1) return 'has "[" without "]"';
    hostPart = entry.slice(0, close + 1);
    const rest = entry.slice(close + 1);
    if (rest !== '') {
      const p = rest.startsWith(':') ? portOf(rest.slice(1)) : undefined;
      if (p === undefined) return 'must be followed by nothing or by ":" and a port from 1 to 65535';
      port = p;
    }
    const ip = normalizeHost(hostPart);
    if (ip === undefined || ip.kind === 'name') return 'is not an IPv6 address inside [ ]';
    return unspecified(ip) ?? { kind: ip.kind, host: ip.value, port };
  }
  const colons = entry.split(':').length - 1;
  if (colons > 1) {
    // More than one colon: a bare IPv6 address, which cannot carry a port (write [IPv6]:port).
    const ip = normalizeHost(entry);
    if (ip === undefined || ip.kind === 'name')
      return 'is not an IPv6 address (write an IPv6 address with a port as [address]:port)';
    return unspecified(ip) ?? { kind: ip.kind, host: ip.value, port };
  }
  if (colons === 1) {
    const i = entry.indexOf(':');
    hostPart = entry.slice(0, i);
    const p = portOf(entry.slice(i + 1));
    if (p === undefined) return 'has a port that is not a number from 1 to 65535';
    port = p;
  }
  if (hostPart === '*') return 'is "*" alone: a wildcard needs a domain (*.example.com)';
  if (hostPart.startsWith('*.')) {
    const suffix = hostPart.slice(2);
    if (suffix.includes('*')) return 'has more than one "*": only one leading "*." is allowed';
    const problem = hostNameProblem(suffix);
    if (problem !== undefined) return `has a wildcard domain that ${problem}`;
    const lower = suffix.toLowerCase().replace(/\.$/, '');
    const labels = lower.split('.');
    if (labels.length < 2) return 'is a wildcard over a whole top-level domain';
    if (
      labels.length === 2 &&
      /^[a-z]{2}$/.test(labels[1] ?? '') &&
      PUBLIC_SECOND_LEVEL_LABELS.has(labels[0] ?? '')
    ) {
      return 'is a wildcard over a public suffix (like *.co.uk)';
    }
    return { kind: 'wildcard', suffix: lower, port };
  }
  if (hostPart.includes('*')) return 'has "*" other than as the whole first label (*.example.com)';
  const ip = normalizeIp(hostPart);
  if (ip !== undefined) return unspecified(ip) ?? { kind: ip.kind, host: ip.value, port };
  if (/^[\d.]+$/.test(hostPart)) return 'is not an IPv4 address in dotted decimal without leading zeros';
  const problem = hostNameProblem(hostPart);
  if (problem !== undefined) return `has a host name that ${problem}`;
  const lower = hostPart.toLowerCase();
  return { kind: 'name', host: lower.endsWith('.') ? lower.slice(0, -1) : lower, port };
}

/** 0.0.0.0 and :: are not destinations: on Linux, connecting to them reaches this device itself. */
function unspecified(ip: NormalizedHost): string | undefined {
  return ip.value === '0.0.0.0' || ip.value === '::' ? 'is the unspecified address' : undefined;
}

/** The rule as the manifest would write it in its one spelling (used for duplicate checks and display). */
export function formatHostRule(rule: HostRule): string {
  const host =
    rule.kind === 'wildcard' ? `*.${rule.suffix}` : rule.kind === 'ipv6' ? `[${rule.host}]` : rule.host;
  const bare = rule.kind === 'ipv6' && rule.port === null ? rule.host : host;
  return rule.port === null ? bare : `${host}:${rule.port}`;
}

/** Whether one rule allows a normalized host and port (§4.2). */
export function ruleAllows(rule: HostRule, host: NormalizedHost, port: number): boolean {
  if (rule.port !== null && rule.port !== port) return false;
  if (rule.kind === 'wildcard') {
    return host.kind === 'name' && host.value.endsWith(`.${rule.suffix}`);
  }
  return rule.kind === host.kind && rule.host === host.value;
}

/**
 * Whether rules allow an outbound connection to host:port (§4.2): the host is normalized like the
 * rules (case, trailing dot, IPv6 spelling, IPv4-mapped IPv6); a name matches name rules and
 * wildcards, an IP literal matches only IP rules of the same address. Anything that is not a
 * valid ASCII host, or a port outside 1..65535, is never allowed. Never throws.
 */
export function hostRulesAllow(rules: readonly HostRule[], host: string, port: number): boolean {
  if (!Number.isInteger(port) || port < 1 || port > 65535) return false;
  const h = normalizeHost(host);
  if (h === undefined) return false;
  return rules.some((r) => ruleAllows(r, h, port));
}
