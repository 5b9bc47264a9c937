import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { HeptadError, writeFileAtomic } from '@heptad/protocol';

export interface Profile {
  readonly url: string;
  readonly token: string;
  /** the trusted CA, kept as PEM so the profile works from any folder */
  readonly caPem?: string;
}

interface ProfilesFile {
  profiles: Record<string, Profile>;
}

export function configDir(env: NodeJS.ProcessEnv): string {
  return env['HEPTAD_CONFIG_DIR'] ?? join(env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config'), 'heptad');
}

function file(env: NodeJS.ProcessEnv): string {
  return join(configDir(env), 'profiles.json');
}

export function readProfiles(env: NodeJS.ProcessEnv): ProfilesFile {
  const path = file(env);
  if (!existsSync(path)) return { profiles: {} };
  try {
    const json = JSON.parse(readFileSync(path, 'utf8')) as ProfilesFile;
    if (typeof json !== 'object' || json === null || typeof json.profiles !== 'object')
      throw new Error('shape');
    return json;
  } catch (cause) {
    throw new HeptadError('CLI_FILE_UNREADABLE', `${path} is not a valid profiles file; fix or delete it`, {
      cause,
    });
  }
}

/** Saves a profile; the file holds tokens, so it is written 0600 in a 0700 folder. */
export function saveProfile(env: NodeJS.ProcessEnv, name: string, profile: Profile): string {
  const dir = configDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const all = readProfiles(env);
  all.profiles[name] = profile;
  const path = file(env);
  writeFileAtomic(path, `${JSON.stringify(all, null, 2)}\n`, 0o600);
  return path;
}
