/**
 * What the device must run, from two TUF repositories (Uptane style, docs/updates.md):
 *
 * - the tenant's IMAGE repository lists every image the tenant's devices may ever run;
 * - the DIRECTOR repository of the device's group names exactly what this group must run now.
 *
 * Both are refreshed with tuf-js (root chain, expiry, rollback, thresholds, lengths — TUF's client
 * workflow), then every director target must be in the image repository with the same length,
 * hash and identity (component, image, type), or nothing is installed at all. A target the
 * director names but the image repository does not is arbitrary software; a disagreement is
 * mix-and-match. Either refuses the whole plan with a code.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HeptadError, readTargetCustom, type TargetCustom, writeFileAtomic } from '@heptad/protocol';
import type { Updater } from 'tuf-js';
import type { UpdateFetcher } from './fetcher.ts';

export const TUF_BASE = '/v1/device/tuf';
export type Repository = 'image' | 'director';
export const REPOSITORIES: readonly Repository[] = ['image', 'director'];

/** One target both repositories agree on. */
export interface PlannedTarget {
  readonly path: string;
  readonly length: number;
  readonly sha256: string;
  readonly custom: TargetCustom;
  /** where to download it (consistent snapshot: hash-prefixed file name) */
  readonly url: string;
}

export interface Plan {
  readonly runtime: PlannedTarget | undefined;
  readonly apps: readonly PlannedTarget[];
  /** the director targets metadata version this plan came from */
  readonly directorVersion: number;
}

/** tuf-js's and our own refusals, mapped to Heptad codes (the attack each one stops in comments). */
export function tufErrorCode(e: unknown): string {
  if (e instanceof HeptadError) return e.code;
  // tuf-js's classes (their names survive bundling: nothing is minified). A targets failure comes
  // wrapped in a RuntimeError whose message carries the cause, so that is read too.
  const name = (e as Error | undefined)?.constructor?.name ?? '';
  const message = String((e as Error | undefined)?.message ?? '');
  if (name === 'ExpiredMetadataError' || /is expired/.test(message)) return 'UPDATE_METADATA_EXPIRED'; // indefinite freeze
  if (
    name === 'BadVersionError' ||
    name === 'EqualVersionError' ||
    /less than current version|must be equal to/.test(message)
  )
    return 'UPDATE_METADATA_ROLLBACK'; // rollback
  if (name === 'UnsignedMetadataError' || /signed by \d+\/\d+ keys/.test(message))
    return 'UPDATE_METADATA_UNSIGNED'; // wrong key, threshold
  if (
    name === 'LengthOrHashMismatchError' ||
    name === 'DownloadLengthMismatchError' ||
    /length|hash|longer than/i.test(message)
  )
    return 'UPDATE_METADATA_LENGTH'; // endless data, tampering
  if (name === 'DownloadHTTPError')
    return (e as { statusCode?: number }).statusCode === 409
      ? 'TUF_DEVICE_NOT_IN_GROUP'
      : 'UPDATE_METADATA_UNAVAILABLE';
  return 'UPDATE_METADATA_INVALID';
}

/** The local folder of one repository's metadata (tuf-js keeps its files there). */
export function metadataDir(stateDir: string, tenantId: string, repo: Repository): string {
  return join(stateDir, 'tuf', tenantId, repo);
}

const isJson = (path: string): boolean => {
  try {
    JSON.parse(readFileSync(path, 'utf8'));
    return true;
  } catch {
    return false;
  }
};

/**
 * Makes sure the repository has a trusted root: the last one this device verified (kept twice —
 * tuf-js writes its files in place, so our atomic copy survives a cut mid-write), or, the first
 * time for this tenant, the service's current root fetched over mTLS from the service the device
 * trusts (trust on first use, over the channel authenticated by the platform CA; from then on
 * only the root chain can change it).
 */
async function ensureRoot(fetcher: UpdateFetcher, dir: string, repo: Repository): Promise<void> {
  const root = join(dir, 'root.json');
  const backup = join(dir, 'trusted-root.json');
  if (isJson(root)) return;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (existsSync(backup) && isJson(backup)) {
    writeFileAtomic(root, readFileSync(backup));
    return;
  }
  const a = await fetcher.get(fetcher.url(`${TUF_BASE}/${repo}/metadata/root.json`), 1024 * 1024);
  // A device in no device group has no director: nothing to run, nothing wrong.
  if (a.status === 409) throw new HeptadError('TUF_DEVICE_NOT_IN_GROUP');
  if (a.status !== 200)
    throw new HeptadError('UPDATE_METADATA_UNAVAILABLE', `no ${repo} root: HTTP ${a.status}`, {
      detail: { status: a.status },
    });
  JSON.parse(a.body.toString('utf8'));
  writeFileAtomic(root, a.body);
  writeFileAtomic(backup, a.body);
}

async function open(
  fetcher: UpdateFetcher,
  stateDir: string,
  tenantId: string,
  repo: Repository,
): Promise<Updater> {
  const dir = metadataDir(stateDir, tenantId, repo);
  await ensureRoot(fetcher, dir, repo);
  // Loaded on the first check, not at boot (see fetcher.ts).
  const { Updater } = await import('tuf-js');
  const up = new Updater({
    metadataDir: dir,
    metadataBaseUrl: fetcher.url(`${TUF_BASE}/${repo}/metadata`),
    targetBaseUrl: fetcher.url(`${TUF_BASE}/image/targets`),
    fetcher,
    config: { fetchRetries: 0 },
  });
  await up.refresh();
  // The newest root this refresh verified, copied atomically.
  writeFileAtomic(join(dir, 'trusted-root.json'), readFileSync(join(dir, 'root.json')));
  return up;
}

interface RawTarget {
  length: number;
  hashes: Record<string, string>;
  custom?: unknown;
}

/** Director targets as tuf-js verified and stored them (refresh() persists only what verified). */
function directorTargets(dir: string): { version: number; targets: Record<string, RawTarget> } {
  const doc = JSON.parse(readFileSync(join(dir, 'targets.json'), 'utf8')) as {
    signed: { version: number; targets?: Record<string, RawTarget> };
  };
  return { version: doc.signed.version, targets: doc.signed.targets ?? {} };
}

/** Where a target is served (consistent snapshot: `dir/<sha256>.<name>`). */
export function targetUrl(fetcher: UpdateFetcher, path: string, sha256: string): string {
  const slash = path.lastIndexOf('/');
  const name = `${path.slice(0, slash + 1)}${sha256}.${path.slice(slash + 1)}`;
  return fetcher.url(`${TUF_BASE}/image/targets/${name}`);
}

/** Refreshes both repositories and returns what the director names, checked against the images. */
export async function planUpdate(fetcher: UpdateFetcher, stateDir: string, tenantId: string): Promise<Plan> {
  let image: Updater;
  try {
    // The director first: its targets (persisted by tuf-js once verified) are read below.
    await open(fetcher, stateDir, tenantId, 'director');
    image = await open(fetcher, stateDir, tenantId, 'image');
  } catch (e) {
    if (e instanceof HeptadError && e.code === 'DEVICE_SERVICE_UNREACHABLE') throw e;
    throw new HeptadError(tufErrorCode(e) as 'UPDATE_METADATA_INVALID', (e as Error).message, { cause: e });
  }
  const { version, targets } = directorTargets(metadataDir(stateDir, tenantId, 'director'));
  let runtime: PlannedTarget | undefined;
  const apps: PlannedTarget[] = [];
  const components = new Set<string>();
  for (const [path, d] of Object.entries(targets)) {
    const custom = readTargetCustom(path, d.custom);
    if (!custom)
      throw new HeptadError('UPDATE_METADATA_INVALID', `director target ${path} is not a Heptad image`);
    const fromImages = await image.getTargetInfo(path);
    if (!fromImages)
      throw new HeptadError('UPDATE_TARGET_UNKNOWN', `the image repository does not list ${path}`, {
        detail: { path },
      });
    const imageCustom = readTargetCustom(path, fromImages.custom);
    const sha256 = d.hashes['sha256'];
    if (
      sha256 === undefined ||
      !/^[0-9a-f]{64}$/.test(sha256) ||
      fromImages.length !== d.length ||
      fromImages.hashes['sha256'] !== sha256 ||
      !imageCustom ||
      imageCustom.componentId !== custom.componentId ||
      imageCustom.imageId !== custom.imageId ||
      imageCustom.type !== custom.type ||
      imageCustom.securityVersion !== custom.securityVersion
    ) {
      throw new HeptadError('UPDATE_METADATA_MISMATCH', `director and image repository disagree on ${path}`, {
        detail: { path },
      });
    }
    // One image per component, one runtime: anything else is a director we cannot follow.
    if (components.has(custom.componentId) || (custom.type === 'runtime' && runtime !== undefined))
      throw new HeptadError('UPDATE_METADATA_INVALID', `the director names ${custom.componentId} twice`);
    components.add(custom.componentId);
    const t: PlannedTarget = {
      path,
      length: d.length,
      sha256,
      custom,
      url: targetUrl(fetcher, path, sha256),
    };
    if (custom.type === 'runtime') runtime = t;
    else apps.push(t);
  }
  return { runtime, apps, directorVersion: version };
}
