/**
 * The device runtime: what the bootloader starts once the runtime package verified. It keeps the
 * device attested (and so certified), tells the service what the boot chain did, commits a trial
 * after its health check, and installs a staged runtime package into the other slot. It runs as
 * its own process; `contract.ts` is its interface to the bootloader.
 */
import { X509Certificate } from 'node:crypto';
import { statfsSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import type { DeviceEvent, DeviceReport, ErrorReportDetails, ErrorReportKind } from '@heptad/protocol';
import {
  HeptadError,
  isHeptadError,
  parseDeviceCertificate,
  RUNTIME_COMPONENT_ID,
  type UpdateStatus,
} from '@heptad/protocol';
import { type AttestationOutcome, AttestationScheduler, attestOnce } from '../agent/attest.ts';
import { DeviceServiceClient, ServiceRefusal } from '../agent/service-client.ts';
import { isAppDevelopment, setAppDevelopment, setImageKeys } from '../apps/trust.ts';
import {
  type BootInfo,
  EXIT,
  INCOMING_RUNTIME_PATH,
  LAST_CHECK_PATH,
  LAST_UPLOAD_PATH,
  type RuntimeMessage,
  type RuntimeSettings,
  UPDATE_NOW_PATH,
  UPLOAD_NOW_PATH,
} from '../boot/contract.ts';
import { acknowledgeEvents, appendEvents, readEvents } from '../boot/events.ts';
import { commitTrial, installRuntime } from '../boot/install.ts';
import { loadPlatformKeys } from '../boot/platform-keys.ts';
import { BrokerSession, describeSession } from '../broker/session.ts';
import { writeBrokerStatus } from '../broker/status.ts';
import { ReportQueue } from '../reports/queue.ts';
import { createReportSender, uploadPending } from '../reports/uploader.ts';
import { openRootOfTrust } from '../rot/open.ts';
import type { RootOfTrust } from '../rot/root-of-trust.ts';
import { DeviceState } from '../state/device-state.ts';
import { FsStorage } from '../state/storage.ts';
import { startAppSupervisor } from '../supervisor/runtime-hook.ts';
import type { AppSupervisor } from '../supervisor/supervisor.ts';
import { UpdateAgent } from '../update/agent.ts';
import { supervisorAppHost } from '../update/app-host.ts';
import { UpdateFetcher } from '../update/fetcher.ts';
import { planUpdate } from '../update/plan.ts';

export interface RuntimeOptions {
  readonly stateDir: string;
  readonly boot: BootInfo;
  readonly settings: RuntimeSettings;
  /** to the bootloader (process.send); a no-op when run without one */
  readonly send: (m: RuntimeMessage) => void;
  readonly exit: (code: number) => void;
  readonly log: (line: string) => void;
  readonly clock?: () => Date;
}

/** The network interface the device talks through (the first one up that is not loopback). */
function networkInterface(): { networkInterface?: string } {
  try {
    for (const [name, addrs] of Object.entries(networkInterfaces()))
      if (addrs?.some((a) => !a.internal)) return { networkInterface: name };
  } catch {
    // not available on this platform
  }
  return {};
}

export class DeviceRuntime {
  readonly #o: RuntimeOptions;
  readonly #state: DeviceState;
  readonly #storage: FsStorage;
  readonly #clock: () => Date;
  #rot: RootOfTrust | undefined;
  #client: DeviceServiceClient | undefined;
  #scheduler: AttestationScheduler | undefined;
  #timers: NodeJS.Timeout[] = [];
  #trial: boolean;
  #floor: number;
  #stopping = false;
  #installing = false;
  #uploading = false;
  #reports: ReportQueue | undefined;
  #updating = false;
  /** an update-now request that came while a check ran: answered by a check right after it */
  #asked: string | null = null;
  /** the first update check of this boot waits for the first attestation */
  #updateTimer: NodeJS.Timeout | undefined;
  #apps: AppSupervisor | undefined;
  /** the one broker session (docs/broker.md §The device's session) */
  #broker: BrokerSession | undefined;
  #lastAttestOk = false;

  constructor(options: RuntimeOptions) {
    this.#o = options;
    this.#state = new DeviceState(options.stateDir);
    this.#storage = new FsStorage(options.stateDir);
    this.#clock = options.clock ?? (() => new Date());
    this.#trial = options.boot.trial;
    this.#floor = options.boot.floor;
  }

  async start(): Promise<void> {
    const { boot, settings } = this.#o;
    const config = this.#state.config();
    this.#reports = new ReportQueue(this.#storage, {
      deviceId: config.deviceId,
      bootId: boot.bootId,
      clock: this.#clock,
    });
    this.#rot = await openRootOfTrust(config.rot, this.#state.secretsDir);
    this.#client = new DeviceServiceClient(config.serviceUrl, this.#state.platformCaPem());
    this.#broker = new BrokerSession({
      deviceId: config.deviceId,
      caPem: this.#state.platformCaPem(),
      log: this.#o.log,
      onMessage: (topic, payload) => this.#apps?.mqttMessage(topic, payload),
      onState: (s) => {
        writeBrokerStatus(this.#o.stateDir, this.#state.brokerUrl(), s, this.#clock());
        // Refused (CONNACK 5): the certificate may have been revoked (quarantine). Attest now, once:
        // refused again, the attestation scheduler retries with its own backoff, and the first
        // certificate it gets (after a release) reconnects the session.
        if (s.state === 'refused' && this.#lastAttestOk) {
          this.#lastAttestOk = false;
          this.#scheduler?.now();
        }
      },
    });
    writeBrokerStatus(this.#o.stateDir, null, this.#broker.state, this.#clock());
    this.#o.send({ type: 'ready' });
    this.#o.log(
      `runtime ${boot.version} (slot ${boot.slot}${boot.trial ? ', trial' : ''}) ready for device ${config.deviceId}`,
    );
    this.#timers.push(setInterval(() => this.#o.send({ type: 'heartbeat' }), settings.heartbeatMs));
    this.#timers.push(setInterval(() => void this.#checkIncoming(), settings.installPollMs));
    // Failure reports: at boot (after the first attestation), past the queue's threshold, and daily.
    this.#timers.push(
      setInterval(() => {
        if (this.#reports?.uploadDue()) void this.uploadReports();
      }, settings.reportCheckMs),
    );
    if (this.#trial) {
      // Health check deadline: a trial that cannot prove itself in time gives its attempt back.
      this.#timers.push(
        setTimeout(() => {
          if (this.#trial) this.#fail('health check timed out');
        }, settings.healthTimeoutMs),
      );
    }
    // Attest at every boot (the measured runtime changed, and the service hears what happened),
    // then whenever the certificate nears its end.
    this.#scheduler = new AttestationScheduler({ attest: () => this.#attest(), clock: this.#clock });
    this.#scheduler.onOutcome.push((r) => void this.#afterAttestation(r));
    this.#scheduler.start();
  }

  report(): DeviceReport {
    const b = this.#o.boot;
    return {
      runtime: {
        slot: b.slot,
        version: b.version,
        digest: b.digest,
        securityVersion: b.securityVersion,
        trial: this.#trial,
        floor: this.#floor,
      },
      events: readEvents(this.#storage),
    };
  }

  async #attest(): Promise<AttestationOutcome & { sent: readonly DeviceEvent[] }> {
    if (!this.#rot || !this.#client) throw new HeptadError('INTERNAL_ERROR', 'runtime not started');
    const report = this.report();
    const outcome = await attestOnce({
      state: this.#state,
      rot: this.#rot,
      client: this.#client,
      clock: this.#clock,
      report,
    });
    // The service has the events now: they are not sent again.
    acknowledgeEvents(this.#storage, report.events);
    return { ...outcome, sent: report.events };
  }

  async #afterAttestation(
    r: { ok: true; outcome: AttestationOutcome } | { ok: false; error: unknown },
  ): Promise<void> {
    if (r.ok) this.#syncAppTrust(r.outcome);
    this.#lastAttestOk = r.ok;
    this.#syncBroker();
    this.#startApps();
    if (r.ok) {
      this.#o.send({ type: 'attested', ok: true, notAfter: r.outcome.notAfter });
      this.#o.log(`attested: certificate ${r.outcome.serial} until ${r.outcome.notAfter}`);
      if (this.#trial) this.#commit();
      if ((this.#reports?.pending().length ?? 0) > 0) void this.uploadReports();
      // The first certificate of this boot starts the update checks (at boot, then periodically).
      if (this.#updateTimer === undefined && !this.#stopping) {
        this.#updateTimer = setTimeout(() => void this.#updateLoop(), 0);
      }
      return;
    }
    const code =
      isHeptadError(r.error) || r.error instanceof ServiceRefusal ? r.error.code : 'INTERNAL_ERROR';
    this.#o.send({ type: 'attested', ok: false, code });
    this.#o.log(`attestation failed: ${code}`);
    if (r.error instanceof ServiceRefusal) this.record('attestation-refused', { code });
    // The service could not read the report: drop its events rather than be refused forever.
    if (r.error instanceof ServiceRefusal && code === 'REQUEST_INVALID') {
      acknowledgeEvents(this.#storage, readEvents(this.#storage));
      this.#o.log('the service refused the report; its events were dropped');
    }
    // A refusal is the service's verdict on this runtime: a trial that is refused is unhealthy.
    // (Unreachable service: keep retrying until the health deadline.)
    if (this.#trial && r.error instanceof ServiceRefusal) this.#fail(`attestation refused: ${code}`);
  }

  /**
   * The broker session follows every attestation outcome: the URL the service named last (null:
   * none, the session is off) and the certificate the device holds now — a new one reconnects
   * with it; a refused attestation (quarantine) leaves the old one, which the broker refuses, and
   * the session backs off.
   */
  #syncBroker(): void {
    if (this.#stopping || !this.#broker) return;
    const cert = this.#state.certificate();
    const live = cert && Date.parse(cert.notAfter) > this.#clock().getTime() ? cert : undefined;
    const before = describeSession(this.#broker.state);
    this.#broker.configure(
      this.#state.brokerUrl(),
      live && { keyPem: live.keyPem, chainPem: live.chainPem, serial: live.serial },
    );
    if (before === 'off' && this.#broker.state.state === 'off' && this.#state.brokerUrl() === null)
      this.#o.log('broker: the service names no broker; no session');
  }

  /**
   * Apps start after the first attestation outcome, whatever it is: attested, the boot's
   * measurements are on record before any app adds its own; offline or refused, the device still
   * runs its (verified, measured) apps, as an Azure Sphere device does.
   */
  #startApps(): void {
    if (this.#apps !== undefined || this.#stopping || !this.#rot) return;
    const config = this.#state.config();
    const broker = this.#broker as BrokerSession;
    this.#apps = startAppSupervisor({
      state: this.#state,
      storage: this.#storage,
      rot: this.#rot,
      pcr: config.measurementPcr,
      deviceId: config.deviceId,
      log: this.#o.log,
      ...(this.#broker
        ? {
            mqtt: {
              get connected() {
                return broker.connected;
              },
              describe: () => describeSession(broker.state),
              publish: (t: string, p: Buffer, q: 0 | 1) => broker.publish(t, p, q),
              subscribe: (f: string) => broker.subscribe(f),
              unsubscribe: (f: string) => broker.unsubscribe(f),
            },
          }
        : {}),
      report: (e) => {
        try {
          this.#reports?.record(e);
        } catch {
          // the queue never stops the runtime
        }
      },
    });
  }

  /**
   * The tenant's production image keys, fetched at each update check: the tenant's first image
   * may be newer than this device's last attestation (which carries them too).
   */
  async #refreshImageKeys(fetcher: UpdateFetcher): Promise<void> {
    try {
      const a = await fetcher.get(fetcher.url('/v1/device/image-keys'), 256 * 1024);
      if (a.status !== 200) return;
      const pem = (JSON.parse(a.body.toString('utf8')) as { keysPem?: unknown }).keysPem;
      if (typeof pem === 'string' && pem.trim().length > 0) setImageKeys(this.#storage, pem);
    } catch (e) {
      this.#o.log(`image keys not refreshed: ${isHeptadError(e) ? e.code : String(e)}`);
    }
  }

  /**
   * What the service said at attestation decides what apps this device trusts: the tenant's
   * production image keys (cloud-deployed apps), and whether it is a development device (the
   * appDevelopment capability: developer-signed apps run; without it they no longer start).
   */
  #syncAppTrust(outcome: AttestationOutcome): void {
    try {
      if (outcome.imageKeysPem.trim().length > 0) setImageKeys(this.#storage, outcome.imageKeysPem);
      const dev = outcome.capabilities.includes('appDevelopment');
      if (isAppDevelopment(this.#storage) !== dev) {
        setAppDevelopment(this.#storage, dev);
        this.#o.log(
          `app development ${dev ? 'enabled' : 'disabled'} by the service (appDevelopment capability)`,
        );
      }
    } catch (e) {
      this.#o.log(`app trust not updated: ${isHeptadError(e) ? e.code : String(e)}`);
    }
  }

  /** The app supervisor once started (startApp, stopApp, restartApp, health, requestDeferral). */
  get apps(): AppSupervisor | undefined {
    return this.#apps;
  }

  /** Health check passed (started, attested): make the trial the committed runtime. */
  #commit(): void {
    try {
      const platformKeys = loadPlatformKeys(this.#storage);
      const { floor } = commitTrial({ storage: this.#storage, platformKeys });
      this.#trial = false;
      this.#floor = floor;
      appendEvents(
        this.#storage,
        [
          {
            kind: 'trial-committed',
            slot: this.#o.boot.slot,
            version: this.#o.boot.version,
            digest: this.#o.boot.digest,
          },
        ],
        this.#clock(),
      );
      this.#o.send({ type: 'committed', floor });
      this.#o.log(`runtime ${this.#o.boot.version} committed; anti-rollback floor ${floor}`);
      // Tell the service now (committed runtime, trial-committed), not at the next renewal.
      this.#scheduler?.now();
    } catch (e) {
      this.#fail(`commit failed: ${isHeptadError(e) ? e.code : String(e)}`);
    }
  }

  /** Installs a staged runtime package into the other slot, then asks for a reboot into its trial. */
  async #checkIncoming(): Promise<void> {
    if (this.#installing || this.#stopping) return;
    // An update-now request: taken at once; answered now, or by a check right after a running one
    // (which started before the request and so cannot answer it).
    const asked = this.#storage.read(UPDATE_NOW_PATH);
    if (asked !== undefined) {
      this.#storage.remove(UPDATE_NOW_PATH);
      // The request's id (heptad device update-now waits for its answer), bounded and plain.
      const id = asked.toString('utf8').trim();
      this.#asked = /^[0-9a-f-]{1,64}$/.test(id) ? id : '';
    }
    if (this.#asked !== null && !this.#updating) {
      const id = this.#asked;
      this.#asked = null;
      void this.checkForUpdates('on demand', id === '' ? undefined : id);
    }
    // heptad device upload-reports: the same, for the error-report queue (taken when no upload runs).
    const upload = this.#uploading ? undefined : this.#storage.read(UPLOAD_NOW_PATH);
    if (upload !== undefined) {
      this.#storage.remove(UPLOAD_NOW_PATH);
      const id = upload.toString('utf8').trim();
      void this.uploadReports(/^[0-9a-f-]{1,64}$/.test(id) ? id : undefined);
    }
    const bytes = this.#storage.read(INCOMING_RUNTIME_PATH);
    if (bytes === undefined) return;
    this.#installing = true;
    try {
      const platformKeys = loadPlatformKeys(this.#storage);
      const { slot, pkg } = installRuntime({ storage: this.#storage, platformKeys, pkg: bytes });
      // Removed only after the install committed: a power cut in between installs it again.
      this.#storage.remove(INCOMING_RUNTIME_PATH);
      this.#o.send({ type: 'installed', slot, version: pkg.manifest.version, digest: pkg.digest });
      this.#o.log(`installed runtime ${pkg.manifest.version} into slot ${slot}; rebooting into its trial`);
      this.stop(EXIT.REBOOT);
    } catch (e) {
      const code = isHeptadError(e) ? e.code : 'INTERNAL_ERROR';
      appendEvents(this.#storage, [{ kind: 'install-refused', code }], this.#clock());
      this.record('update-failure', { phase: 'install', code });
      this.#storage.remove(INCOMING_RUNTIME_PATH);
      this.#o.log(`runtime package refused: ${code}`);
    } finally {
      this.#installing = false;
    }
  }

  /** Checks now, then every updateCheckMs with ±10 % jitter (so a fleet does not ask at once). */
  async #updateLoop(): Promise<void> {
    await this.checkForUpdates('boot');
    if (this.#stopping) return;
    const every = this.#o.settings.updateCheckMs;
    const delay = Math.max(1_000, Math.round(every * (0.9 + Math.random() * 0.2)));
    this.#updateTimer = setTimeout(() => void this.#updateLoop(), delay);
    this.#timers.push(this.#updateTimer);
  }

  /**
   * One update check (update/agent.ts) with the current device certificate: TUF metadata from
   * the director and the image repository, downloads over mTLS, the runtime first. Its outcome is
   * written to update/last-check.json. Needs a certificate: before the first one, it waits.
   */
  async checkForUpdates(why: string, request?: string): Promise<void> {
    if (this.#updating || this.#stopping) return;
    const cert = this.#state.certificate();
    if (!cert) {
      const at = this.#clock().toISOString();
      const r = {
        at,
        why,
        ...(request ? { request } : {}),
        ok: false,
        code: 'DEVICE_CERT_NOT_ISSUED',
        jobs: [],
      };
      this.#storage.write(LAST_CHECK_PATH, Buffer.from(`${JSON.stringify(r, null, 2)}\n`), 0o644);
      return;
    }
    this.#updating = true;
    if (why !== 'boot') this.#o.log(`update check (${why}) started`);
    const config = this.#state.config();
    const fetcher = new UpdateFetcher({
      serviceUrl: config.serviceUrl,
      caPem: this.#state.platformCaPem(),
      certificate: { chainPem: cert.chainPem, keyPem: cert.keyPem },
    });
    const sender = createReportSender(this.#state);
    const started = this.#clock();
    // Asked by the agent after a runtime install: done once the outcome is written.
    let reboot = false;
    try {
      const tenantId = parseDeviceCertificate(new X509Certificate(cert.chainPem).raw).tenantId;
      await this.#refreshImageKeys(fetcher);
      const agent = new UpdateAgent({
        storage: this.#storage,
        runtime: {
          imageId: this.#o.boot.imageId,
          trial: this.#trial,
          floor: this.#floor,
          install: (pkg) => ({
            digest: installRuntime({
              storage: this.#storage,
              platformKeys: loadPlatformKeys(this.#storage),
              pkg,
            }).pkg.digest,
          }),
          reboot: () => {
            reboot = true;
          },
        },
        ...(this.#apps
          ? {
              apps: supervisorAppHost(this.#storage, () => this.#apps, {
                healthMs: this.#o.settings.appHealthMs,
              }),
            }
          : {}),
        plan: () => planUpdate(fetcher, this.#o.stateDir, tenantId),
        source: (job) => fetcher.rangeSource(job.url),
        appDevelopment: () => this.#state.capabilities().includes('appDevelopment'),
        freeBytes: () => {
          const s = statfsSync(this.#o.stateDir);
          return Number(s.bavail) * Number(s.bsize);
        },
        report: async (statuses: UpdateStatus[]) => {
          await sender.post('/v1/device/update-status', { statuses });
        },
        record: (kind, f) =>
          this.record(
            kind,
            { phase: f.phase, code: f.code, ...networkInterface() },
            f.componentId && f.componentId.length > 0 ? f.componentId : RUNTIME_COMPONENT_ID,
            f.imageId,
          ),
        log: (line) => this.#o.log(`update: ${line}`),
        clock: this.#clock,
      });
      const r = await agent.resume().then((first) => (first.rebooting ? first : agent.check()));
      const summary = {
        at: started.toISOString(),
        finishedAt: this.#clock().toISOString(),
        why,
        ...(request ? { request } : {}),
        ok: r.ok,
        ...(r.code !== undefined ? { code: r.code } : {}),
        rebooting: r.rebooting,
        jobs: r.jobs.map((j) => ({
          name: j.name,
          version: j.version,
          kind: j.kind,
          componentId: j.componentId,
          imageId: j.imageId,
          state: j.state,
          ...(j.code !== undefined ? { code: j.code } : {}),
        })),
      };
      this.#storage.write(LAST_CHECK_PATH, Buffer.from(`${JSON.stringify(summary, null, 2)}\n`), 0o644);
      this.#o.log(
        `update check (${why}): ${r.ok ? 'done' : `refused ${r.code}`}; ${r.jobs.map((j) => `${j.name} ${j.version} ${j.state}`).join(', ') || 'nothing to do'}`,
      );
    } catch (e) {
      const code = isHeptadError(e) ? e.code : 'INTERNAL_ERROR';
      this.#o.log(`update check failed: ${code}`);
      this.#storage.write(
        LAST_CHECK_PATH,
        Buffer.from(
          `${JSON.stringify({ at: started.toISOString(), why, ...(request ? { request } : {}), ok: false, code, jobs: [] }, null, 2)}\n`,
        ),
        0o644,
      );
    } finally {
      fetcher.close();
      sender.close();
      this.#updating = false;
      if (reboot) {
        this.#o.log('update: rebooting into the new runtime');
        this.stop(EXIT.REBOOT);
      }
    }
  }

  /** Records a failure report (best effort: the queue never stops the runtime). */
  record(
    kind: ErrorReportKind,
    details: ErrorReportDetails,
    componentId = RUNTIME_COMPONENT_ID,
    imageId?: string,
  ): void {
    try {
      this.#reports?.record({ kind, componentId, ...(imageId ? { imageId } : {}), details });
    } catch {
      // a damaged queue file is replaced at the next write; the report is lost, the device runs
    }
  }

  /**
   * Uploads the queued failure reports over mTLS with the device certificate. Its outcome is
   * written to reports/last-upload.json, with `request` when heptad device upload-reports asked.
   */
  async uploadReports(request?: string): Promise<void> {
    if (this.#uploading || !this.#reports) return;
    this.#uploading = true;
    const outcome = (o: Record<string, unknown>) => {
      const r = { at: this.#clock().toISOString(), ...(request ? { request } : {}), ...o };
      try {
        this.#storage.write(LAST_UPLOAD_PATH, Buffer.from(`${JSON.stringify(r, null, 2)}\n`), 0o644);
      } catch {
        // best effort: the outcome is also in the device's log
      }
    };
    try {
      const sender = createReportSender(this.#state);
      try {
        const r = await uploadPending(this.#reports, sender);
        if (r.accepted + r.duplicate + r.refused > 0)
          this.#o.log(
            `error reports uploaded: ${r.accepted} accepted, ${r.duplicate} already held, ${r.refused} refused`,
          );
        if (r.stopped) this.#o.log(`error report upload stopped: ${r.stopped.code}`);
        outcome({
          ok: r.stopped === undefined,
          accepted: r.accepted,
          duplicate: r.duplicate,
          refused: r.refused,
          ...(r.stopped ? { code: r.stopped.code } : {}),
        });
      } finally {
        sender.close();
      }
    } catch (e) {
      const code = isHeptadError(e) ? e.code : 'INTERNAL_ERROR';
      this.#o.log(`error report upload failed: ${isHeptadError(e) ? e.code : String(e)}`);
      outcome({ ok: false, code, accepted: 0, duplicate: 0, refused: 0 });
    } finally {
      this.#uploading = false;
    }
  }

  #fail(why: string): void {
    this.#o.log(`trial health check failed (${why})`);
    this.stop(EXIT.HEALTH_FAILED);
  }

  stop(code: number = EXIT.STOPPED): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#scheduler?.stop();
    for (const t of this.#timers) clearInterval(t);
    this.#client?.close();
    this.#broker?.stop();
    const rot = this.#rot;
    void (async () => {
      try {
        await this.#apps?.stop();
        await rot?.close();
      } finally {
        this.#o.exit(code);
      }
    })();
  }
}
