// DockerRuntime against the real local engine: a 3-manager Raft group in
// containers, broken on purpose (kill, crash inside the container, pause,
// network cut), then removed. Needs a running engine and the built bundle
// (scripts/setup.sh, npm run build); without them this file FAILS and says
// so, it never passes silently.
//
// The docker CLI is used only to check what the engine holds and to crash a
// node from inside its container, independently of the code under test.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DvoteError } from '../../src/core/errors.js';
import { networkName, resourceName, volumeName } from '../../src/core/naming.js';
import { DockerEngine, LogFrameDecoder, rfc3339Nanos } from '../../src/runtime/docker.js';
import { DockerRuntime, RESTART_POLICY_LABEL, configHash, nodeState } from '../../src/runtime/docker-runtime.js';
import { LABEL } from '../../src/runtime/labels.js';
import type { NodeSpec, ObservedNode } from '../../src/runtime/runtime.js';
import { waitFor } from '../../src/runtime/wait.js';
import type { NodeConfig } from '../../src/services/common/node-config.js';
import { freePort } from '../utils/manager-processes.js';

const run = promisify(execFile);
const CLUSTER = `t-dock-${randomBytes(3).toString('hex')}`;
const MANAGERS = ['manager-1', 'manager-2', 'manager-3'];
const DOCKER_SOCKET = '/var/run/docker.sock';

let runtime: DockerRuntime;
let image: string;
const httpPorts = new Map<string, number>();
/** Extra env per node: a node recreated with another spec keeps it from then on. */
const nodeEnv = new Map<string, Record<string, string>>();

function docker(...args: string[]): Promise<string> {
  return run('docker', args, { timeout: 30_000 }).then((r) => r.stdout.trim());
}

function managerSpec(name: string, extra: Partial<NodeSpec> = {}): NodeSpec {
  const a = runtime.addressing(CLUSTER);
  const listenHttp = a.listen(name, 'http', 0);
  const config: NodeConfig = {
    cluster: CLUSTER,
    id: name,
    role: 'manager',
    dataDir: a.dataDir(name),
    listen: { host: listenHttp.host, httpPort: listenHttp.port, raftPort: a.listen(name, 'raft', 0).port },
    advertise: { http: a.internal(name, 'http', 0), raft: a.internal(name, 'raft', 0) },
    managers: MANAGERS.map((m) => ({ id: m, http: a.internal(m, 'http', 0), raft: a.internal(m, 'raft', 0) })),
    bootstrap: true,
    logLevel: 'info',
  };
  const env = nodeEnv.get(name);
  return { cluster: CLUSTER, name, role: 'manager', config, ports: { http: httpPorts.get(name) ?? 1 }, ...(env ? { env } : {}), ...extra };
}

interface Health {
  id: string;
  state: string;
  leader: string | null;
  term: number;
}

async function health(endpoint: string, timeoutMs = 1_000): Promise<Health> {
  const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(timeoutMs) });
  return (await res.json()) as Health;
}

async function node(name: string): Promise<ObservedNode> {
  const found = (await runtime.listNodes(CLUSTER)).find((n) => n.name === name);
  if (!found) throw new Error(`${name} is not listed`);
  return found;
}

/** The leader that every answering member of `among` agrees on. */
async function waitForLeader(among: string[], opts: { not?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await waitFor(
    `a leader agreed on by ${among.join(', ')}`,
    async () => {
      const nodes = await runtime.listNodes(CLUSTER);
      const views = await Promise.all(
        among.map(async (name) => {
          const n = nodes.find((x) => x.name === name);
          return n ? health(n.endpoint).catch(() => null) : null;
        }),
      );
      const leaders = new Set(views.map((v) => v?.leader ?? null));
      const leader = views[0]?.leader ?? null;
      if (views.some((v) => v === null)) return { done: false, reason: 'a member does not answer' };
      if (leaders.size !== 1 || leader === null) return { done: false, reason: `leaders seen: ${[...leaders].join(',')}` };
      if (leader === opts.not) return { done: false, reason: `still ${leader}` };
      return { done: true, value: leader };
    },
    { timeoutMs: opts.timeoutMs ?? 45_000, intervalMs: 200 },
  );
  return r.value;
}

async function waitForState(name: string, state: ObservedNode['state'], timeoutMs = 20_000): Promise<ObservedNode> {
  const r = await waitFor(
    `${name} to be ${state}`,
    async () => {
      const n = await node(name);
      return n.state === state ? { done: true, value: n } : { done: false, reason: `state ${n.state}` };
    },
    { timeoutMs, intervalMs: 100 },
  );
  return r.value;
}

async function waitForHealth(name: string, timeoutMs = 30_000): Promise<Health> {
  const r = await waitFor(
    `${name} to answer /health`,
    async () => ({ done: true, value: await health((await node(name)).endpoint) }),
    { timeoutMs, intervalMs: 200 },
  );
  return r.value;
}

/** SIGKILL the node program from inside its container: a crash, as far as Docker knows. */
async function crashInside(name: string): Promise<void> {
  const before = await docker('inspect', resourceName(CLUSTER, name), '--format', '{{.State.Pid}}');
  // The exec dies with the container when the program goes (tini exits with
  // it), so its exit status says nothing; the container's own pid does.
  await docker('exec', resourceName(CLUSTER, name), 'pkill', '-9', '-f', 'node-main.js').catch(() => '');
  await waitFor(
    `${name}'s program to die`,
    async () => {
      const pid = await docker('inspect', resourceName(CLUSTER, name), '--format', '{{.State.Pid}}');
      return pid !== before ? { done: true, value: null } : { done: false, reason: `pid ${pid}` };
    },
    { timeoutMs: 10_000, intervalMs: 50 },
  );
}

async function labelled(kind: 'ps -a' | 'network ls' | 'volume ls'): Promise<string[]> {
  const format = kind === 'ps -a' ? '{{.Names}}' : '{{.Name}}';
  const out = await docker(...kind.split(' '), '--filter', `label=${LABEL.cluster}=${CLUSTER}`, '--format', format);
  return out === '' ? [] : out.split('\n');
}

function expectDvoteError(err: unknown, code: DvoteError['code']): DvoteError {
  expect(err).toBeInstanceOf(DvoteError);
  expect((err as DvoteError).code).toBe(code);
  return err as DvoteError;
}

/**
 * A Unix socket in front of the engine's that can "lose" the engine: on a
 * request whose first line matches `dieOn`, or when kill() is called, it
 * closes every connection and stops listening, as a daemon that went away.
 */
class DockerSocketProxy {
  readonly path = join(tmpdir(), `dvote-proxy-${randomBytes(4).toString('hex')}.sock`);
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;
  dieOn: RegExp | undefined;
  died = false;

  constructor() {
    this.server = createServer((client) => {
      const upstream = connect(DOCKER_SOCKET);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {});
      }
      client.on('data', (chunk: Buffer) => {
        if (this.dieOn && this.dieOn.test(chunk.toString('latin1').split('\r\n')[0] ?? '')) {
          this.kill();
          return;
        }
        upstream.write(chunk);
      });
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.path, resolve));
  }

  kill(): void {
    this.died = true;
    this.server.close();
    for (const s of this.sockets) s.destroy();
    rmSync(this.path, { force: true });
  }
}

describe('docker runtime helpers (pure)', () => {
  const frame = (stream: 1 | 2, text: string): Buffer => {
    const payload = Buffer.from(text);
    const header = Buffer.alloc(8);
    header[0] = stream;
    header.writeUInt32BE(payload.length, 4);
    return Buffer.concat([header, payload]);
  };

  it('LogFrameDecoder splits frames cut anywhere into lines, per stream', () => {
    const bytes = Buffer.concat([frame(1, 'one\ntw'), frame(2, 'err 1\n'), frame(1, 'o\r\nthree'), frame(2, 'err 2')]);
    for (const cut of [1, 3, 8, 9, 15, bytes.length - 1]) {
      const d = new LogFrameDecoder();
      const out = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut)), ...d.end()];
      expect(out).toEqual([
        { stream: 'stdout', line: 'one' },
        { stream: 'stderr', line: 'err 1' },
        { stream: 'stdout', line: 'two' },
        { stream: 'stdout', line: 'three' },
        { stream: 'stderr', line: 'err 2' },
      ]);
    }
  });

  it('LogFrameDecoder takes timestamps off and reads a TTY stream as raw stdout', () => {
    const d = new LogFrameDecoder(true);
    expect(d.push(frame(1, '2024-05-01T12:00:00.5Z hello world\n'))).toEqual([
      { stream: 'stdout', line: 'hello world', time: '2024-05-01T12:00:00.5Z' },
    ]);
    const raw = new LogFrameDecoder();
    expect([...raw.push(Buffer.from('plain\nte')), ...raw.push(Buffer.from('xt\n'))]).toEqual([
      { stream: 'stdout', line: 'plain' },
      { stream: 'stdout', line: 'text' },
    ]);
  });

  it('rfc3339Nanos orders the engine times exactly', () => {
    expect(rfc3339Nanos('1970-01-01T00:00:01.000000002Z')).toBe(1_000_000_002n);
    expect(rfc3339Nanos('2024-05-01T12:00:00.5Z')).toBe(rfc3339Nanos('2024-05-01T12:00:00.500000000Z'));
    expect(rfc3339Nanos('2024-05-01T12:00:00.123456789Z') < rfc3339Nanos('2024-05-01T12:00:00.12345679Z')).toBe(true);
    expect(rfc3339Nanos('2024-05-01T14:00:00+02:00')).toBe(rfc3339Nanos('2024-05-01T12:00:00Z'));
  });

  it('nodeState tells an injected kill from a crash by the restart policy', () => {
    const base = { status: 'exited' as const, running: false, paused: false, restarting: false };
    const onFailure = { [RESTART_POLICY_LABEL]: 'on-failure' };
    const never = { [RESTART_POLICY_LABEL]: 'no' };
    const policy = (name: 'no' | 'on-failure' | 'unless-stopped') => ({ name, maximumRetryCount: 0 });
    expect(nodeState({ ...base, labels: onFailure, restartPolicy: policy('on-failure') })).toBe('exited');
    expect(nodeState({ ...base, labels: onFailure, restartPolicy: policy('no') })).toBe('killed');
    expect(nodeState({ ...base, labels: never, restartPolicy: policy('no') })).toBe('exited');
    expect(nodeState({ ...base, labels: never, restartPolicy: policy('unless-stopped') })).toBe('killed');
    expect(nodeState({ ...base, status: 'restarting', running: true, restarting: true, labels: onFailure, restartPolicy: policy('on-failure') })).toBe('starting');
    expect(nodeState({ ...base, status: 'paused', running: true, paused: true, labels: onFailure, restartPolicy: policy('on-failure') })).toBe('paused');
    expect(nodeState({ ...base, status: 'running', running: true, labels: onFailure, restartPolicy: policy('no') })).toBe('running');
  });

  it('configHash changes with config, env, image, ports, labels and restart choice, not with key order', () => {
    const config = { cluster: 'c', id: 'manager-1', role: 'manager', dataDir: '/data', listen: { host: '0.0.0.0', httpPort: 8080 }, advertise: { http: 'a:8080' }, managers: [] } as NodeConfig;
    const spec: NodeSpec = { cluster: 'c', name: 'manager-1', role: 'manager', config, ports: { http: 7101 }, env: { A: '1', B: '2' } };
    const h = configHash(spec, 'img:1');
    expect(h).toMatch(/^[0-9a-f]{16}$/);
    expect(configHash({ ...spec, env: { B: '2', A: '1' } }, 'img:1')).toBe(h);
    const variants = [
      configHash(spec, 'img:2'),
      configHash({ ...spec, ports: { http: 7102 } }, 'img:1'),
      configHash({ ...spec, env: { A: '1' } }, 'img:1'),
      configHash({ ...spec, labels: { 'io.dvote.shard': '1' } }, 'img:1'),
      configHash({ ...spec, restartOnCrash: false }, 'img:1'),
      configHash({ ...spec, config: { ...config, logLevel: 'debug' } }, 'img:1'),
    ];
    for (const v of variants) expect(v).not.toBe(h);
  });
});

describe('DockerRuntime on the local engine', () => {
  beforeAll(async () => {
    runtime = new DockerRuntime();
    try {
      await runtime.check();
    } catch (e) {
      throw new Error(`Docker is required for this suite and is not reachable: ${(e as Error).message}`);
    }
    for (const m of [...MANAGERS, 'manager-9']) httpPorts.set(m, await freePort());
    const progress: string[] = [];
    await runtime.prepareCluster(CLUSTER, { onProgress: (m) => progress.push(m) });
    const networks = await labelled('network ls');
    expect(networks).toEqual([networkName(CLUSTER)]);
    image = (await runtime.start(managerSpec('manager-1'))).labels[LABEL.image] ?? '';
    expect(image).toMatch(/^dvote-node:[0-9a-f]{16}$/);
  }, 600_000);

  afterAll(async () => {
    // Clean up with a fresh runtime on the real socket, whatever the tests did.
    await new DockerRuntime({ image: 'unused' }).removeCluster(CLUSTER, { volumes: true });
  }, 120_000);

  it('starts a 3-manager group that elects a leader over the cluster network', async () => {
    await Promise.all(MANAGERS.slice(1).map((m) => runtime.start(managerSpec(m))));
    const leader = await waitForLeader(MANAGERS);
    expect(MANAGERS).toContain(leader);
  }, 90_000);

  it('lists the nodes from labels, with endpoints on 127.0.0.1 and the container IP', async () => {
    const nodes = await runtime.listNodes(CLUSTER);
    expect(nodes.map((n) => n.name)).toEqual(MANAGERS);
    for (const n of nodes) {
      expect(n).toMatchObject({ cluster: CLUSTER, role: 'manager', state: 'running', disconnected: false, restartCount: 0 });
      expect(n.endpoint).toBe(`http://127.0.0.1:${httpPorts.get(n.name)}`);
      expect(n.directEndpoint).toMatch(/^http:\/\/\d+\.\d+\.\d+\.\d+:8080$/);
      expect(n.labels[LABEL.node]).toBe(n.name);
      expect(n.labels[LABEL.configHash]).toMatch(/^[0-9a-f]{16}$/);
      expect(JSON.parse(n.labels[LABEL.ports] ?? '{}')).toEqual({ http: httpPorts.get(n.name) });
      expect(n.ports).toEqual({ http: httpPorts.get(n.name) });
      expect(n.startedAt).not.toBeNull();
      expect(n.pgAddress).toBeUndefined();
      // Both addresses reach the same node program.
      expect((await health(n.endpoint)).id).toBe(n.name);
      expect((await health(n.directEndpoint)).id).toBe(n.name);
    }
    expect(await runtime.listClusters()).toContain(CLUSTER);
    // Raft is not published: only the http port is bound on the host.
    const ports = await docker('port', resourceName(CLUSTER, 'manager-1'));
    expect(ports.split('\n')).toEqual([`8080/tcp -> 127.0.0.1:${httpPorts.get('manager-1')}`]);
    // The data lives in the node's named volume.
    const mounts = await docker('inspect', resourceName(CLUSTER, 'manager-1'), '--format', '{{range .Mounts}}{{.Name}}:{{.Destination}}{{end}}');
    expect(mounts).toBe(`${volumeName(CLUSTER, 'manager-1')}:/data`);
  }, 30_000);

  it('start() of a running node with the same spec changes nothing', async () => {
    const before = await runtime.listNodes(CLUSTER);
    const again = await Promise.all(MANAGERS.map((m) => runtime.start(managerSpec(m))));
    expect(again.map((n) => n.runtimeId)).toEqual(before.map((n) => n.runtimeId));
    expect(again.map((n) => n.startedAt)).toEqual(before.map((n) => n.startedAt));
  }, 30_000);

  it('staleNodes names the nodes made from another image than the one this runtime runs', async () => {
    expect(await runtime.staleNodes(CLUSTER)).toEqual([]);
    expect(await new DockerRuntime({ image: `${image}-next` }).staleNodes(CLUSTER)).toEqual(MANAGERS);
    expect(await new DockerRuntime({ image: `${image}-next` }).staleNodes('no-such-cluster')).toEqual([]);
  }, 30_000);

  it('recreates a node whose spec changed, keeping its volume', async () => {
    const target = 'manager-3';
    const before = await node(target);
    await docker('exec', resourceName(CLUSTER, target), 'sh', '-c', 'echo kept > /data/marker');
    nodeEnv.set(target, { DVOTE_TEST_GENERATION: '2' });
    const after = await runtime.start(managerSpec(target));
    expect(after.runtimeId).not.toBe(before.runtimeId);
    expect(after.labels[LABEL.configHash]).not.toBe(before.labels[LABEL.configHash]);
    expect(await docker('exec', resourceName(CLUSTER, target), 'cat', '/data/marker')).toBe('kept');
    await waitForLeader(MANAGERS);
  }, 60_000);

  it('an injected kill stays down, a crash inside the container comes back by itself', async () => {
    const leader = await waitForLeader(MANAGERS);
    const killedBefore = await node(leader);
    await runtime.kill(CLUSTER, leader);
    const killed = await node(leader);
    expect(killed.state).toBe('killed');
    expect(killed.startedAt).toBeNull();
    const survivors = MANAGERS.filter((m) => m !== leader);
    const newLeader = await waitForLeader(survivors, { not: leader });
    expect(survivors).toContain(newLeader);
    // Several seconds later it is still down: nothing restarted it.
    await expect(
      waitFor(
        `${leader} to come back after a kill`,
        async () => {
          const n = await node(leader);
          return n.state === 'killed' ? { done: false, reason: 'still killed' } : { done: true, value: n };
        },
        { timeoutMs: 5_000, intervalMs: 250 },
      ),
    ).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect((await node(leader)).runtimeId).toBe(killedBefore.runtimeId);

    // A follower whose node program dies inside the container is restarted by the engine.
    const follower = survivors.find((m) => m !== newLeader) ?? newLeader;
    const crashedBefore = await node(follower);
    await crashInside(follower);
    const back = await waitFor(
      `${follower} to be restarted after its crash`,
      async () => {
        const n = await node(follower);
        return n.restartCount > crashedBefore.restartCount && n.state === 'running'
          ? { done: true, value: n }
          : { done: false, reason: `state ${n.state}, restarts ${n.restartCount}` };
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect(back.value.runtimeId).toBe(crashedBefore.runtimeId);
    expect((await waitForHealth(follower)).id).toBe(follower);
  }, 90_000);

  it('start() brings a killed node back with its restart policy restored', async () => {
    const killed = (await runtime.listNodes(CLUSTER)).find((n) => n.state === 'killed');
    expect(killed).toBeDefined();
    const name = killed!.name;
    const started = await runtime.start(managerSpec(name));
    expect(started.runtimeId).toBe(killed!.runtimeId);
    expect(['running', 'starting']).toContain(started.state);
    await waitForHealth(name);
    await waitForLeader(MANAGERS);
    // Crash-restart works again for it.
    await crashInside(name);
    await waitFor(
      `${name} to come back after a crash`,
      async () => {
        const n = await node(name);
        return n.restartCount >= 1 && n.state === 'running' ? { done: true, value: n } : { done: false, reason: `state ${n.state}` };
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    await waitForHealth(name);
  }, 90_000);

  it('a kill with TERM stops the node gracefully and is remembered too; revive() undoes it without a spec', async () => {
    const name = 'manager-2';
    await runtime.kill(CLUSTER, name, { signal: 'TERM' });
    expect((await node(name)).state).toBe('killed');
    const exitCode = await docker('inspect', resourceName(CLUSTER, name), '--format', '{{.State.ExitCode}}');
    expect(exitCode).toBe('0'); // the node program handled SIGTERM
    const revived = await runtime.revive(CLUSTER, name);
    expect(['running', 'starting']).toContain(revived.state);
    expect(await docker('inspect', resourceName(CLUSTER, name), '--format', '{{.HostConfig.RestartPolicy.Name}}')).toBe('on-failure');
    await waitForHealth(name);
    // A running node is left alone.
    expect((await runtime.revive(CLUSTER, name)).runtimeId).toBe(revived.runtimeId);
  }, 60_000);

  it('pause freezes a node, unpause thaws it', async () => {
    const name = 'manager-1';
    await runtime.pause(CLUSTER, name);
    const paused = await node(name);
    expect(paused.state).toBe('paused');
    await expect(health(paused.endpoint, 1_000)).rejects.toThrow();
    await runtime.pause(CLUSTER, name); // idempotent
    expect((await runtime.revive(CLUSTER, name)).state).toBe('running');
    await runtime.pause(CLUSTER, name);
    await runtime.unpause(CLUSTER, name);
    expect((await node(name)).state).toBe('running');
    expect((await waitForHealth(name)).id).toBe(name);
    await runtime.unpause(CLUSTER, name); // idempotent

    // A paused node can be killed; start() brings it back.
    await runtime.pause(CLUSTER, name);
    await runtime.kill(CLUSTER, name);
    expect((await node(name)).state).toBe('killed');
    await runtime.start(managerSpec(name));
    expect((await waitForHealth(name)).id).toBe(name);
  }, 60_000);

  it('disconnect cuts a node off the cluster network; reconnect and start() restore it', async () => {
    const name = 'manager-2';
    await runtime.disconnect(CLUSTER, name);
    const cut = await node(name);
    expect(cut.disconnected).toBe(true);
    expect(cut.state).toBe('running');
    const members = await docker('network', 'inspect', networkName(CLUSTER), '--format', '{{range .Containers}}{{.Name}} {{end}}');
    expect(members.split(' ')).not.toContain(resourceName(CLUSTER, name));
    await expect(health(cut.endpoint, 1_000)).rejects.toThrow();
    await runtime.reconnect(CLUSTER, name);
    expect((await node(name)).disconnected).toBe(false);
    await waitForHealth(name);

    // revive() and start() converge a disconnected node too.
    await runtime.disconnect(CLUSTER, name);
    expect((await runtime.revive(CLUSTER, name)).disconnected).toBe(false);
    await runtime.disconnect(CLUSTER, name);
    await runtime.start(managerSpec(name));
    expect((await node(name)).disconnected).toBe(false);
    await waitForHealth(name);
    await waitForLeader(MANAGERS);
  }, 60_000);

  it('logs gives the node output line by line, with tail and follow', async () => {
    const all: string[] = [];
    for await (const line of runtime.logs(CLUSTER, 'manager-1')) all.push(line);
    expect(all.length).toBeGreaterThan(0);
    expect(all.some((l) => l.includes('manager started'))).toBe(true);
    for (const l of all) expect(l).not.toMatch(/[\x00-\x08]/); // no frame headers left

    const tail: string[] = [];
    for await (const line of runtime.logs(CLUSTER, 'manager-1', { tail: 2 })) tail.push(line);
    expect(tail).toEqual(all.slice(-2));

    // follow: runs until aborted, across a crash-restart of the node.
    const controller = new AbortController();
    const followed: string[] = [];
    const reading = (async () => {
      for await (const line of runtime.logs(CLUSTER, 'manager-3', { follow: true, tail: 0, signal: controller.signal })) {
        followed.push(line);
        if (line.includes('manager started')) controller.abort();
      }
    })();
    await crashInside('manager-3');
    await waitFor('the followed log to show the restart', async () => (controller.signal.aborted ? { done: true, value: null } : { done: false, reason: `${followed.length} lines` }), {
      timeoutMs: 20_000,
    });
    await reading;
    expect(followed.some((l) => l.includes('manager started'))).toBe(true);
    for (const l of followed) expect(l).not.toMatch(/^\d{4}-\d\d-\d\dT/); // engine timestamps stripped
    await waitForHealth('manager-3');

    // A followed log of a node killed on purpose ends by itself.
    const untilKilled: string[] = [];
    const following = (async () => {
      for await (const line of runtime.logs(CLUSTER, 'manager-2', { follow: true, tail: 1 })) untilKilled.push(line);
    })();
    await waitFor('the first followed line', async () => (untilKilled.length > 0 ? { done: true, value: null } : { done: false, reason: 'none yet' }), {
      timeoutMs: 10_000,
    });
    await runtime.kill(CLUSTER, 'manager-2');
    await following;
    expect(untilKilled.length).toBeGreaterThanOrEqual(1);
    await runtime.start(managerSpec('manager-2'));
    await waitForHealth('manager-2');

    await expect(
      (async () => {
        for await (const _ of runtime.logs(CLUSTER, 'manager-77')) void _;
      })(),
    ).rejects.toMatchObject({ code: 'NOT_FOUND' });
  }, 60_000);

  it('busyPorts finds ports held by another program, and by another cluster only', async () => {
    const held = createServer();
    await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve));
    const heldPort = (held.address() as { port: number }).port;
    try {
      const free = await freePort();
      const own = httpPorts.get('manager-1')!;
      expect(await runtime.busyPorts([heldPort, free, own], { cluster: CLUSTER })).toEqual([heldPort]);
      expect(await runtime.busyPorts([heldPort, free, own])).toEqual([heldPort, own]);
      expect(await runtime.busyPorts([own], { cluster: 'some-other' })).toEqual([own]);

      // A start on a busy port fails with PORT_BUSY and leaves nothing behind.
      const err = await runtime.start(managerSpec('manager-9', { ports: { http: heldPort } })).catch((e: unknown) => e);
      const dv = expectDvoteError(err, 'PORT_BUSY');
      expect(dv.message).toContain(String(heldPort));
      expect(await labelled('ps -a')).not.toContain(resourceName(CLUSTER, 'manager-9'));
      expect(await labelled('volume ls')).not.toContain(volumeName(CLUSTER, 'manager-9'));
    } finally {
      held.close();
    }
  }, 30_000);

  it('stop is graceful and remembered; operations on unknown nodes say NOT_FOUND', async () => {
    await expect(runtime.stop(CLUSTER, 'manager-9')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(runtime.kill(CLUSTER, 'manager-9')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(runtime.pause(CLUSTER, 'manager-9')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const name = 'manager-3';
    await runtime.stop(CLUSTER, name, { timeoutMs: 5_000 });
    const stopped = await node(name);
    expect(stopped.state).toBe('killed');
    await expect(runtime.pause(CLUSTER, name)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await runtime.start(managerSpec(name));
    await waitForHealth(name);
  }, 60_000);

  it('a daemon that goes away in the middle of a command gives RUNTIME_UNAVAILABLE', async () => {
    // The proxy drops everything when the engine is asked to start a container.
    const proxy = new DockerSocketProxy();
    await proxy.listen();
    proxy.dieOn = /^POST \S*\/containers\/\S+\/start/;
    const viaProxy = new DockerRuntime({ engine: DockerEngine.connect({ socketPath: proxy.path }), image });
    const err = await viaProxy.start(managerSpec('manager-9')).catch((e: unknown) => e);
    expect(proxy.died).toBe(true);
    const dv = expectDvoteError(err, 'RUNTIME_UNAVAILABLE');
    expect(dv.exitCode).toBe(3);
    expect(dv.message).toContain(`cannot reach Docker at ${proxy.path}`);
    // The rollback could not reach the engine either; what it had created
    // carries the cluster label, so `down` finds it.
    expect(await labelled('ps -a')).toContain(resourceName(CLUSTER, 'manager-9'));
    await runtime.remove(CLUSTER, 'manager-9', { volumes: true });
    expect(await labelled('ps -a')).not.toContain(resourceName(CLUSTER, 'manager-9'));
    expect(await labelled('volume ls')).not.toContain(volumeName(CLUSTER, 'manager-9'));

    // And in the middle of a followed log.
    const proxy2 = new DockerSocketProxy();
    await proxy2.listen();
    const viaProxy2 = new DockerRuntime({ engine: DockerEngine.connect({ socketPath: proxy2.path }), image });
    const lines: string[] = [];
    const following = (async () => {
      for await (const line of viaProxy2.logs(CLUSTER, 'manager-1', { follow: true, tail: 3 })) {
        lines.push(line);
        if (lines.length === 3) proxy2.kill();
      }
    })();
    const followErr = await following.then(
      () => null,
      (e: unknown) => e,
    );
    expect(lines.length).toBe(3);
    expectDvoteError(followErr, 'RUNTIME_UNAVAILABLE');
  }, 60_000);

  it('without a daemon, check() and listNodes() say RUNTIME_UNAVAILABLE', async () => {
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = `unix://${join(tmpdir(), `no-docker-${randomBytes(4).toString('hex')}.sock`)}`;
    try {
      const absent = new DockerRuntime();
      for (const call of [() => absent.check(), () => absent.listNodes(), () => absent.listNodes(CLUSTER)]) {
        const err = await call().catch((e: unknown) => e);
        const dv = expectDvoteError(err, 'RUNTIME_UNAVAILABLE');
        expect(dv.exitCode).toBe(3);
        expect(dv.message).toMatch(/^cannot reach Docker at unix:\/\/.*: start dockerd \(scripts\/setup\.sh\) or use --runtime process$/);
      }
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  }, 30_000);

  it('parallel start() calls on a fresh cluster share one network', async () => {
    const other = `${CLUSTER}-b`;
    const spec = (name: string): NodeSpec => {
      const base = managerSpec(name);
      return { ...base, cluster: other, ports: {}, config: { ...base.config, cluster: other } };
    };
    try {
      const started = await Promise.all(['manager-1', 'manager-2'].map((m) => runtime.start(spec(m))));
      expect(started.map((n) => n.cluster)).toEqual([other, other]);
      // Without a published http port the endpoint is the container IP.
      expect(started[0]!.endpoint).toBe(started[0]!.directEndpoint);
      const networks = await docker('network', 'ls', '--filter', `label=${LABEL.cluster}=${other}`, '--format', '{{.Name}}');
      expect(networks).toBe(networkName(other));
    } finally {
      const removed = await runtime.removeCluster(other, { volumes: true });
      expect(removed.nodes).toEqual(['manager-1', 'manager-2']);
    }
  }, 60_000);

  it('removeCluster removes every container, network and volume with the cluster label, leaked ones too', async () => {
    // Leftovers of a crashed `up`: a second network and an orphan volume.
    await docker('network', 'create', '--label', `${LABEL.managed}=true`, '--label', `${LABEL.cluster}=${CLUSTER}`, `${networkName(CLUSTER)}-leak`);
    await docker('volume', 'create', '--label', `${LABEL.managed}=true`, '--label', `${LABEL.cluster}=${CLUSTER}`, `${volumeName(CLUSTER, 'orphan')}`);
    expect(await runtime.listClusters()).toContain(CLUSTER);
    const removed = await runtime.removeCluster(CLUSTER, { volumes: true });
    expect(removed.nodes).toEqual(MANAGERS);
    expect([...removed.networks].sort()).toEqual([networkName(CLUSTER), `${networkName(CLUSTER)}-leak`].sort());
    expect([...removed.volumes].sort()).toEqual(
      [...MANAGERS.map((m) => volumeName(CLUSTER, m)), volumeName(CLUSTER, 'orphan')].sort(),
    );
    expect(await labelled('ps -a')).toEqual([]);
    expect(await labelled('network ls')).toEqual([]);
    expect(await labelled('volume ls')).toEqual([]);
    expect(await runtime.listNodes(CLUSTER)).toEqual([]);
    expect(await runtime.listClusters()).not.toContain(CLUSTER);
    // Idempotent.
    expect(await runtime.removeCluster(CLUSTER, { volumes: true })).toEqual({ nodes: [], networks: [], volumes: [] });
  }, 60_000);
});
