import { HeptadError } from '@heptad/protocol';
import type { FastifyRequest } from 'fastify';
import {
  type ChangeContext,
  isTenantPrincipal,
  type Principal,
  ROLE_RANK,
  type TenantPrincipal,
} from '../context.ts';
import type { Role } from '../store/schema.ts';
import type { Store, TenantScope } from '../store/store.ts';
import { hashToken, isWellFormedToken } from '../tenants/tokens.ts';
import { createDeviceAuthenticator, type DeviceAuthenticator } from './device-auth.ts';

/**
 * Who may call a route. Declared on every route (route config `access`); a route without one
 * fails at start-up, so nothing is reachable by forgetting to protect it.
 */
export type Access =
  | { readonly kind: 'public' }
  | { readonly kind: 'operator' }
  | { readonly kind: 'tenant'; readonly minRole: Role; readonly operator: boolean }
  /** a device, by its tenant-CA client certificate over mTLS (http/device-auth.ts); no token */
  | { readonly kind: 'device' };

export const access = {
  public: { kind: 'public' } as Access,
  operator: { kind: 'operator' } as Access,
  device: { kind: 'device' } as Access,
  /** tenant users with at least `minRole`; `operator` also lets the platform operator in */
  tenant: (minRole: Role, operator = false): Access => ({ kind: 'tenant', minRole, operator }),
};

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

const MAX_AUTH_HEADER = 256;

export interface Authenticator extends TokenResolver {
  /** Throws a coded error, or returns (a promise when the token had to be looked up). */
  authenticate(request: FastifyRequest): Promise<void> | undefined;
}

/** A token's holder, for callers other than HTTP routes (the MQTT broker: a token as password). */
export interface ResolvedToken {
  readonly principal: Principal;
  readonly expiresAt: string | null;
  /** SHA-256 of the token: what a caller may keep to re-check it later */
  readonly hash: string;
}

export interface TokenResolver {
  /** undefined for a malformed or unknown token (the caller checks expiry and role) */
  resolveToken(token: string): Promise<ResolvedToken | undefined>;
  resolveHash(hash: string): Promise<ResolvedToken | undefined>;
}

/**
 * Resolved tokens are cached briefly: every authenticated request needs its principal, and the
 * lookup was a third of a read's cost. A token change (a new operator token) reaches every
 * service process within TOKEN_CACHE_MS; expiry is checked on every request, cached or not.
 * Unknown tokens are never cached, so random tokens cannot grow the cache.
 */
export const TOKEN_CACHE_MS = 5_000;
const TOKEN_CACHE_MAX = 10_000;

export function createAuthenticator(
  store: Store,
  clock: () => Date,
  devices: DeviceAuthenticator = createDeviceAuthenticator(store, clock),
): Authenticator {
  const users = store.platform().users;
  const cache = new Map<string, { principal: Principal; expiresAt: string | null; until: number }>();
  const resolve = async (hash: string) => {
    const now = clock().getTime();
    const hit = cache.get(hash);
    if (hit && hit.until > now) return hit;
    const found = await users.resolveToken(hash);
    if (!found) {
      cache.delete(hash);
      return undefined;
    }
    if (cache.size >= TOKEN_CACHE_MAX) cache.delete(cache.keys().next().value as string);
    const entry = { ...found, until: now + TOKEN_CACHE_MS };
    cache.set(hash, entry);
    return entry;
  };
  /** Checks the resolved principal against the route's rule (sync: no I/O left by now). */
  const authorize = (
    request: FastifyRequest,
    rule: Access,
    found: { principal: Principal; expiresAt: string | null },
  ) => {
    if (found.expiresAt !== null && found.expiresAt <= clock().toISOString()) {
      throw new HeptadError('AUTH_TOKEN_EXPIRED');
    }
    const p = found.principal;
    request.principal = p;
    if (rule.kind === 'operator') {
      if (p.role !== 'Operator') throw new HeptadError('AUTH_OPERATOR_REQUIRED');
      return;
    }
    if (p.role === 'Operator') {
      if (rule.kind === 'tenant' && !rule.operator) throw new HeptadError('AUTH_TENANT_REQUIRED');
      return;
    }
    if (rule.kind === 'tenant' && ROLE_RANK[p.role] < ROLE_RANK[rule.minRole]) {
      throw new HeptadError('AUTH_ROLE_INSUFFICIENT');
    }
  };
  const resolveHash = async (hash: string): Promise<ResolvedToken | undefined> => {
    const found = await resolve(hash);
    return found && { principal: found.principal, expiresAt: found.expiresAt, hash };
  };
  return {
    resolveHash,
    async resolveToken(token) {
      if (!isWellFormedToken(token)) return undefined;
      return resolveHash(hashToken(token));
    },
    // Synchronous when the token is cached (most requests): no promise, no extra microtask.
    authenticate(request) {
      const rule = request.routeOptions.config.access;
      if (!rule) throw new HeptadError('INTERNAL_ERROR', 'route without access rule');
      if (rule.kind === 'public') return undefined;
      // Device routes take no token: the client certificate is the credential.
      if (rule.kind === 'device') return devices.authenticate(request).then(() => undefined);
      const header = request.headers.authorization;
      if (header === undefined || header === '') throw new HeptadError('AUTH_TOKEN_MISSING');
      if (header.length > MAX_AUTH_HEADER || !header.startsWith('Bearer ')) {
        throw new HeptadError('AUTH_TOKEN_INVALID');
      }
      const token = header.slice('Bearer '.length).trim();
      if (!isWellFormedToken(token)) throw new HeptadError('AUTH_TOKEN_INVALID');
      const hash = hashToken(token);
      const hit = cache.get(hash);
      if (hit && hit.until > clock().getTime()) {
        authorize(request, rule, hit);
        return undefined;
      }
      return resolve(hash).then((found) => {
        if (!found) throw new HeptadError('AUTH_TOKEN_INVALID');
        authorize(request, rule, found);
      });
    },
  };
}

export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new HeptadError('AUTH_TOKEN_MISSING');
  return request.principal;
}

/** The caller as a tenant user; the operator gets AUTH_TENANT_REQUIRED. */
export function tenantPrincipalOf(request: FastifyRequest): TenantPrincipal {
  const p = principalOf(request);
  if (!isTenantPrincipal(p)) throw new HeptadError('AUTH_TENANT_REQUIRED');
  return p;
}

export function tenantScope(store: Store, request: FastifyRequest): TenantScope {
  return store.forTenant(tenantPrincipalOf(request).tenantId);
}

export function changeContext(request: FastifyRequest, clock: () => Date): ChangeContext {
  return { actor: principalOf(request), requestId: request.id, now: clock() };
}
