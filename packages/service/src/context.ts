import type { Role, UserRole } from './store/schema.ts';

/** Who is calling: resolved from the bearer token by http/auth.ts. */
export interface Principal {
  readonly userId: string;
  readonly email: string;
  readonly role: UserRole;
  /** null only for the platform operator */
  readonly tenantId: string | null;
}

export interface TenantPrincipal extends Principal {
  readonly role: Role;
  readonly tenantId: string;
}

/** What every change needs to write its audit record. */
export interface ChangeContext {
  readonly actor: Principal;
  readonly requestId: string;
  readonly now: Date;
}

export const ROLE_RANK: Readonly<Record<Role, number>> = { Reader: 1, Contributor: 2, Administrator: 3 };

export function isTenantPrincipal(p: Principal): p is TenantPrincipal {
  return p.tenantId !== null && p.role !== 'Operator';
}
