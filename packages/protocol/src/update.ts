/**
 * Update delivery (DESIGN.md flow 5), the parts device and service share: what a TUF target says
 * about the image it names, and what a device tells the service about each update step. The
 * metadata itself is TUF 1.0 (docs/updates.md); this file is only Heptad's vocabulary on top.
 */

/** Target paths in the image and director repositories. */
export const APP_TARGET_PREFIX = 'apps/';
export const RUNTIME_TARGET_PREFIX = 'runtime/';

/** The `custom` field of a Heptad target (image and director repositories alike). */
export interface TargetCustom {
  readonly componentId: string;
  readonly imageId: string;
  readonly name: string;
  readonly version: string;
  readonly securityVersion: number;
  readonly type: 'application' | 'runtime';
}

/** Target path of an image: `apps/<componentId>/<imageId>.hpkg` or `runtime/<imageId>.hpkg`. */
export function targetPathOf(t: Pick<TargetCustom, 'componentId' | 'imageId' | 'type'>): string {
  return t.type === 'runtime'
    ? `${RUNTIME_TARGET_PREFIX}${t.imageId}.hpkg`
    : `${APP_TARGET_PREFIX}${t.componentId}/${t.imageId}.hpkg`;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Reads a target's custom field; undefined when it is not a well-formed Heptad target (the device
 * then refuses the target: metadata it cannot read is never acted on).
 */
export function readTargetCustom(path: string, custom: unknown): TargetCustom | undefined {
  if (typeof custom !== 'object' || custom === null || Array.isArray(custom)) return undefined;
  const c = custom as Record<string, unknown>;
  const { componentId, imageId, name, version, securityVersion, type } = c;
  if (typeof componentId !== 'string' || !UUID.test(componentId)) return undefined;
  if (typeof imageId !== 'string' || !UUID.test(imageId)) return undefined;
  if (typeof name !== 'string' || name.length === 0 || name.length > 256) return undefined;
  // the package's own manifest (verified at install) holds the exact semver; here only a bound
  if (typeof version !== 'string' || version.length === 0 || version.length > 128) return undefined;
  if (typeof securityVersion !== 'number' || !Number.isSafeInteger(securityVersion) || securityVersion < 0)
    return undefined;
  if (type !== 'application' && type !== 'runtime') return undefined;
  const t: TargetCustom = { componentId, imageId, name, version, securityVersion, type };
  // The path must be the one the custom field implies: a target cannot pose as another component.
  return targetPathOf(t) === path ? t : undefined;
}

/** What a device reports about one component's update (deployment progress). */
export const UPDATE_STATES = ['pending', 'downloading', 'installed', 'failed', 'rolled-back'] as const;
export type UpdateState = (typeof UPDATE_STATES)[number];

export interface UpdateStatus {
  readonly componentId: string;
  readonly imageId: string;
  readonly state: UpdateState;
  /** for failed and rolled-back: the error code */
  readonly code?: string;
  /** ISO-8601 UTC, device clock */
  readonly at: string;
}

/** Status lines per upload. */
export const MAX_UPDATE_STATUS_BATCH = 64;
