import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { deviceIdOf } from '@heptad/protocol';
import { type RunningService, resolveConfig, startService } from '@heptad/service';
import pino from 'pino';
import { createDatabase } from '../../../test/support/postgres.ts';
import { COMMANDS } from '../src/commands.ts';
import { runCaptured } from './support/run-cli.ts';

const backendsToTest = process.env['HEPTAD_TEST_PG_URL'] ? ['sqlite', 'postgres'] : ['sqlite'];

for (const backend of backendsToTest) {
  describe(`heptad CLI against a running service (${backend})`, () => {
    let svc: RunningService;
    let dir: string;
    let env: NodeJS.ProcessEnv;
    let operator: string;

    const cli = (argv: string[], extraEnv: NodeJS.ProcessEnv = {}) =>
      runCaptured(argv, { ...env, ...extraEnv }, dir);

    /** A new Administrator of Contoso, as HEPTAD_* variables for the commands that act as it. */
    const administratorEnv = async (email: string): Promise<NodeJS.ProcessEnv> => {
      const u = await cli([
        'user',
        'create',
        email,
        '--tenant',
        'Contoso',
        '--role',
        'Administrator',
        '--output',
        'json',
      ]);
      assert.equal(u.code, 0, u.err);
      return { HEPTAD_URL: svc.url, HEPTAD_TOKEN: String(u.json()['token']), HEPTAD_CA: String(svc.caPath) };
    };

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'heptad-cli-'));
      const db =
        backend === 'postgres'
          ? await createDatabase(String(process.env['HEPTAD_TEST_PG_URL']), `cli_${process.pid}`)
          : undefined;
      svc = await startService(
        resolveConfig({
          data: join(dir, 'data'),
          listen: '127.0.0.1:0',
          mqttListen: '127.0.0.1:0',
          ...(db ? { db } : {}),
        }),
        {
          logger: pino({ level: process.env['HEPTAD_TEST_LOG'] ?? 'silent' }, pino.destination(2)),
          env: {},
        },
      );
      operator = readFileSync(svc.operatorTokenPath, 'utf8').trim();
      env = { HEPTAD_CONFIG_DIR: join(dir, 'config') };
    });
    after(async () => {
      await svc.close();
      rmSync(dir, { recursive: true, force: true });
    });

    test('login checks the token, then saves a 0600 profile that later commands use', async () => {
      const bad = await cli([
        'login',
        '--url',
        svc.url,
        '--token',
        `hpt_${'B'.repeat(43)}`,
        '--ca',
        String(svc.caPath),
      ]);
      assert.equal(bad.code, 1);
      assert.match(bad.err, /^heptad: AUTH_TOKEN_INVALID: /);
      const r = await cli([
        'login',
        '--url',
        svc.url,
        '--token',
        operator,
        '--ca',
        String(svc.caPath),
        '--output',
        'json',
      ]);
      assert.equal(r.code, 0, r.err);
      const path = String(r.json()['path']);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const list = await cli(['tenant', 'list']);
      assert.equal(list.code, 0, list.err);
      assert.match(list.out, /^ID\s+NAME\s+CREATED\n/);
    });

    test('the operator sets up a tenant and its first Administrator, whose token is printed once', async () => {
      const t = await cli(['tenant', 'create', 'Contoso', '--output', 'json']);
      assert.equal(t.code, 0, t.err);
      assert.deepEqual(Object.keys(t.json()).sort(), ['createdAt', 'id', 'name']);
      const show = await cli(['tenant', 'show', 'Contoso', '--output', 'json']);
      assert.equal(show.json()['id'], t.json()['id']);
      const u = await cli([
        'user',
        'create',
        'admin@contoso.com',
        '--tenant',
        'Contoso',
        '--role',
        'Administrator',
      ]);
      assert.equal(u.code, 0, u.err);
      assert.match(u.out, /hpt_[A-Za-z0-9_-]{43}/);
      assert.match(u.err, /shown once/);
    });

    test('a tenant Administrator runs the product, group and device commands from the environment', async () => {
      const adminEnv = await administratorEnv('ops@contoso.com');
      const as = (argv: string[]) => cli(argv, adminEnv);

      assert.equal((await as(['tenant', 'show'])).code, 0);
      const p = await as(['product', 'create', 'DW100', '--description', 'Dishwasher', '--output', 'json']);
      assert.equal(p.code, 0, p.err);
      const groups = await as(['device-group', 'list', '--product', 'DW100', '--output', 'json']);
      assert.equal(groups.json().items?.length, 5);
      const g = await as([
        'device-group',
        'create',
        '--product',
        'DW100',
        'Marketing',
        '--os-feed',
        'retail-eval',
        '--output',
        'json',
      ]);
      assert.equal(g.json()['osFeed'], 'retail-eval');
      const gu = await as([
        'device-group',
        'update',
        'DW100/Marketing',
        '--update-policy',
        'no-app-updates',
        '--output',
        'json',
      ]);
      assert.equal(gu.json()['updatePolicy'], 'no-app-updates');
      const gs = await as(['device-group', 'show', 'DW100/Marketing']);
      assert.match(gs.out, /Marketing\s+retail-eval\s+no-app-updates\s+false\s+0/);
      const peers = await as([
        'device-group',
        'update',
        'DW100/Marketing',
        '--allow-peer-messages',
        '--output',
        'json',
      ]);
      assert.equal(peers.json()['allowPeerMessages'], true);
      const nopeers = await as([
        'device-group',
        'update',
        'DW100/Marketing',
        '--no-allow-peer-messages',
        '--output',
        'json',
      ]);
      assert.equal(nopeers.json()['allowPeerMessages'], false);
      const both = await as([
        'device-group',
        'update',
        'DW100/Marketing',
        '--allow-peer-messages',
        '--no-allow-peer-messages',
      ]);
      assert.equal(both.code, 2);
      assert.match(both.err, /CLI_USAGE/);

      // the operator registers a device from its public key file; the tenant claims it
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const id = deviceIdOf(publicKey);
      writeFileSync(join(dir, 'dev.pub.pem'), publicKey.export({ format: 'pem', type: 'spki' }));
      const reg = await cli([
        'device',
        'register',
        '--id',
        id.toUpperCase(),
        '--public-key',
        'dev.pub.pem',
        '--rot-kind',
        'soft',
      ]);
      assert.equal(reg.code, 0, reg.err);
      const claim = await as([
        'device',
        'claim',
        id,
        '--device-group',
        'DW100/Marketing',
        '--output',
        'json',
      ]);
      assert.deepEqual(claim.json(), { claimed: [id], alreadyClaimed: [] });
      const listed = await as(['device', 'list', '--device-group', 'DW100/Marketing', '--output', 'json']);
      assert.deepEqual(
        listed.json().items?.map((d) => d['id']),
        [id],
      );
      const del = await as(['device-group', 'delete', 'DW100/Marketing']);
      assert.equal(del.code, 1);
      assert.match(del.err, /^heptad: DEVICE_GROUP_HAS_DEVICES: .+ — move its devices/);
      const moved = await as([
        'device',
        'update',
        id,
        '--device-group',
        'DW100/Production',
        '--output',
        'json',
      ]);
      assert.equal(moved.json()['deviceGroupName'], 'Production');
      assert.equal((await as(['device-group', 'delete', 'DW100/Marketing'])).code, 0);
      const shown = await as(['device', 'show', id, '--output', 'json']);
      assert.equal(shown.json()['productName'], 'DW100');
      const unclaimed = await cli(['device', 'unclaim', id, '--output', 'json']);
      assert.equal(unclaimed.json()['tenantId'], null);
      const audit = await as(['audit', 'list', '--limit', '3', '--output', 'json']);
      assert.equal(audit.json().items?.length, 3);
      assert.equal((await as(['product', 'update', 'DW100', '--name', 'DW200'])).code, 0);
      assert.equal((await as(['product', 'show', 'DW200'])).code, 0);
      // the only device was unclaimed, so the product's groups are empty and it can go
      assert.equal((await as(['product', 'delete', 'DW200'])).code, 0);
      assert.equal((await as(['product', 'show', 'DW200'])).code, 1);
    });

    test('a soft device is manufactured, registered from its record, claimed, attests, and is quarantined', async () => {
      const adminEnv = await administratorEnv('pki@contoso.com');
      const as = (argv: string[]) => cli(argv, adminEnv);
      const state = join(dir, 'dev-soft');
      const made = await cli([
        'device',
        'manufacture',
        '--state',
        state,
        '--rot',
        'soft',
        '--service',
        svc.url,
        '--platform-ca',
        String(svc.caPath),
        '--output',
        'json',
      ]);
      assert.equal(made.code, 0, made.err);
      const id = String(made.json()['deviceId']);
      assert.match(id, /^[0-9a-f]{64}$/);
      assert.equal(statSync(join(state, 'secrets', 'identity-key.pem')).mode & 0o777, 0o600);
      const again = await cli([
        'device',
        'manufacture',
        '--state',
        state,
        '--rot',
        'soft',
        '--service',
        svc.url,
      ]);
      assert.match(again.err, /^heptad: DEVICE_STATE_EXISTS: /);
      const badRot = await cli([
        'device',
        'manufacture',
        '--state',
        join(dir, 'x'),
        '--rot',
        'tpm:nowhere',
        '--service',
        svc.url,
      ]);
      assert.match(badRot.err, /^heptad: DEVICE_ROT_SPEC_INVALID: /);

      const reg = await cli([
        'device',
        'register',
        '--from',
        join(state, 'registration.json'),
        '--output',
        'json',
      ]);
      assert.equal(reg.code, 0, reg.err);
      assert.equal(reg.json()['rotKind'], 'soft');
      const unclaimed = await cli(['device', 'attest', '--state', state]);
      assert.equal(unclaimed.code, 1);
      assert.match(unclaimed.err, /^heptad: ATTEST_DEVICE_UNCLAIMED: /);
      assert.equal((await as(['device', 'claim', id])).code, 0);

      const att = await cli(['device', 'attest', '--state', state, '--output', 'json']);
      assert.equal(att.code, 0, att.err);
      const outcome = att.json();
      assert.equal(outcome['rotKind'], 'soft');
      assert.match(String(outcome['chainPem']), /BEGIN CERTIFICATE/);
      const table = await cli(['device', 'attest', '--state', state]);
      assert.match(table.out, /^DEVICE\s+ROT\s+SERIAL\s+NOT AFTER\n/);
      assert.equal(JSON.parse(readFileSync(join(state, 'attestation.json'), 'utf8')).outcome, 'certified');

      const cas = await as(['tenant', 'ca-certificate', 'list', '--output', 'json']);
      assert.deepEqual(
        cas.json().items?.map((c) => `${c['kind']}:${c['status']}`),
        ['issuing:active', 'root:active'],
      );
      const rootFile = join(dir, 'tenant-root.pem');
      assert.equal((await as(['tenant', 'ca-certificate', 'download', '--out', rootFile])).code, 0);
      assert.match(readFileSync(rootFile, 'utf8'), /^-----BEGIN CERTIFICATE-----/);
      const chain = await as(['tenant', 'ca-certificate', 'download', '--chain']);
      assert.equal(chain.out.match(/BEGIN CERTIFICATE/g)?.length, 2);

      assert.equal((await as(['device', 'quarantine', id, '--reason', 'lost in transit'])).code, 0);
      const refused = await cli(['device', 'attest', '--state', state]);
      assert.equal(refused.code, 1);
      assert.match(refused.err, /^heptad: ATTEST_DEVICE_QUARANTINED: /);
      assert.equal(
        JSON.parse(readFileSync(join(state, 'attestation.json'), 'utf8')).code,
        'ATTEST_DEVICE_QUARANTINED',
      );
      const crl = await as(['tenant', 'crl', 'download']);
      assert.match(crl.out, /BEGIN X509 CRL/);
      const events = await as(['security-event', 'list', '--device', id, '--output', 'json']);
      assert.equal(events.json().items?.[0]?.['reason'], 'ATTEST_DEVICE_QUARANTINED');
      assert.equal((await as(['device', 'release', id])).code, 0);
      assert.equal((await cli(['device', 'attest', '--state', state])).code, 0);
    });

    test('every failure is one coded line on stderr with a non-zero exit', async () => {
      writeFileSync(join(dir, 'garbage.json'), '{not json');
      const cases: Array<[string[], NodeJS.ProcessEnv, number, RegExp]> = [
        [['bogus', 'cmd'], {}, 2, /^heptad: CLI_USAGE: unknown command/],
        [['tenant', 'create'], {}, 2, /^heptad: CLI_USAGE: NAME is required/],
        [['tenant', 'list', '--frobnicate'], {}, 2, /^heptad: CLI_USAGE: /],
        [['tenant', 'list', '--output', 'yaml'], {}, 2, /^heptad: CLI_USAGE: --output/],
        [['tenant', 'list', '--profile', 'nope'], {}, 1, /^heptad: CLI_NOT_CONFIGURED: /],
        [['tenant', 'list'], { HEPTAD_CONFIG_DIR: join(dir, 'empty') }, 1, /^heptad: CLI_NOT_CONFIGURED: /],
        [
          ['tenant', 'list', '--url', svc.url, '--token', operator, '--ca', 'missing.pem'],
          {},
          1,
          /^heptad: CLI_FILE_UNREADABLE: /,
        ],
        [['tenant', 'list', '--url', 'ftp://x', '--token', operator], {}, 2, /^heptad: CLI_USAGE: /],
        [['device', 'claim', 'not-an-id'], {}, 2, /^heptad: CLI_USAGE: not a device id/],
        [['device', 'claim'], {}, 2, /^heptad: CLI_USAGE: /],
        [
          ['device', 'register', '--id', 'a'.repeat(64), '--public-key', 'nope.pem'],
          {},
          1,
          /^heptad: CLI_FILE_UNREADABLE: /,
        ],
        [
          ['user', 'create', 'x@y.z', '--role', 'Reader', '--expires-in-days', 'soon'],
          {},
          2,
          /^heptad: CLI_USAGE: /,
        ],
        [['product', 'update', 'X'], {}, 2, /^heptad: CLI_USAGE: /],
        [['device', 'update', 'a'.repeat(64)], {}, 2, /^heptad: CLI_USAGE: /],
        [['device', 'attest', '--state', 'no-such-device'], {}, 1, /^heptad: DEVICE_STATE_INVALID: /],
        [
          ['device', 'manufacture', '--state', 'm1', '--rot', 'soft', '--service', 'not a url'],
          {},
          2,
          /^heptad: CLI_USAGE: /,
        ],
        [
          [
            'device',
            'manufacture',
            '--state',
            'm2',
            '--rot',
            'soft',
            '--service',
            'https://x',
            '--measurement-pcr',
            '99',
          ],
          {},
          2,
          /^heptad: CLI_USAGE: /,
        ],
        [
          ['device', 'register', '--from', 'garbage.json'],
          {},
          1,
          /^heptad: CLI_FILE_UNREADABLE: .+ not JSON/,
        ],
        [
          ['device', 'register', '--from', 'garbage.json', '--id', 'a'.repeat(64)],
          {},
          2,
          /^heptad: CLI_USAGE: /,
        ],
        [
          ['runtime-image', 'add', 'a'.repeat(64), '--version', '1.0.0', '--security-version', 'high'],
          {},
          2,
          /^heptad: CLI_USAGE: /,
        ],
        [['tenant', 'ca-certificate', 'rotate', '--overlap-days', 'soon'], {}, 2, /^heptad: CLI_USAGE: /],
        [['product', 'list'], {}, 1, /^heptad: AUTH_TENANT_REQUIRED: .+ — use the token/],
        [
          ['tenant', 'create', 'bad/name'],
          {},
          1,
          /^heptad: REQUEST_INVALID: .*body\/name must be 1–100 letters/,
        ],
      ];
      for (const [argv, extra, code, line] of cases) {
        const r = await cli(argv, extra);
        assert.equal(r.code, code, `${argv.join(' ')}: ${r.err}`);
        assert.match(r.err, line, argv.join(' '));
        assert.equal(r.err.trim().split('\n').length, 1, `${argv.join(' ')} prints one line`);
        assert.equal(r.out, '', `${argv.join(' ')} prints nothing on stdout`);
      }
      assert.ok(
        !existsSync(join(dir, 'm1')) && !existsSync(join(dir, 'm2')),
        'a refused manufacture leaves no state folder',
      );
    });

    test('an untrusted service certificate and an unreachable service get their own codes', async () => {
      const untrusted = await cli(['tenant', 'list', '--url', svc.url, '--token', operator], {
        HEPTAD_CONFIG_DIR: join(dir, 'none'),
      });
      assert.equal(untrusted.code, 1);
      assert.match(untrusted.err, /^heptad: CLI_TLS_UNTRUSTED: .+ — pass --ca/);
      const down = await cli(['tenant', 'list', '--url', 'https://127.0.0.1:1', '--token', operator], {
        HEPTAD_CONFIG_DIR: join(dir, 'none'),
      });
      assert.match(down.err, /^heptad: CLI_CONNECTION_FAILED: /);
    });

    test('help lists every command and each command has its own help', async () => {
      const all = await cli(['help']);
      for (const c of COMMANDS) assert.ok(all.out.includes(c.path.join(' ')), c.path.join(' '));
      const one = await cli(['device', 'claim', '--help']);
      assert.match(one.out, /^Usage: heptad device claim \[ID…\]/);
      assert.match(one.out, /--output table\|json/);
    });
  });
}
