/**
 * The update agent's one transition table: every step of every update job (a runtime or an app)
 * is an event applied to the job's state here, and nowhere else. The table lists EVERY
 * (state, event) pair: a pair that is not allowed says so explicitly (null), so a new state or
 * event cannot be added without deciding what each combination does (the completeness test
 * checks that, and that every state is reachable and can reach an end).
 *
 *   pending ──start──▶ downloading ──complete──▶ downloaded ──install──▶ installing
 *                        │  ▲ chunk / fetch-failed                          │ installed
 *                        │  └──┘                                            ▼
 *                        └─corrupt──▶ failed ◀──refused── installing     activating
 *                                                                      healthy │ unhealthy
 *                                                                         ▼    ▼
 *                                                                  installed  rolled-back
 *
 * `superseded` (the director names something else now) cancels a job that has not started to
 * install; once installing, a job runs to its end (an install is never left half-way).
 * `retry` gives a failed download another go at the next check (bounded by the agent).
 */
import { HeptadError } from '@heptad/protocol';

export const JOB_STATES = [
  'pending',
  'downloading',
  'downloaded',
  'installing',
  'activating',
  'installed',
  'failed',
  'rolled-back',
  'cancelled',
] as const;
export type JobState = (typeof JOB_STATES)[number];

export const JOB_EVENTS = [
  'start',
  'chunk',
  'fetch-failed',
  'complete',
  'corrupt',
  'install',
  'installed',
  'refused',
  'healthy',
  'unhealthy',
  'superseded',
  'retry',
] as const;
export type JobEvent = (typeof JOB_EVENTS)[number];

/** States a job ends in: the agent reports them and never acts on the job again. */
export const TERMINAL: ReadonlySet<JobState> = new Set(['installed', 'failed', 'rolled-back', 'cancelled']);

type Row = Readonly<Record<JobEvent, JobState | null>>;

const none: Row = {
  start: null,
  chunk: null,
  'fetch-failed': null,
  complete: null,
  corrupt: null,
  install: null,
  installed: null,
  refused: null,
  healthy: null,
  unhealthy: null,
  superseded: null,
  retry: null,
};

export const TRANSITIONS: Readonly<Record<JobState, Row>> = {
  pending: { ...none, start: 'downloading', refused: 'failed', superseded: 'cancelled' },
  downloading: {
    ...none,
    chunk: 'downloading',
    'fetch-failed': 'downloading',
    complete: 'downloaded',
    corrupt: 'failed',
    refused: 'failed',
    superseded: 'cancelled',
  },
  downloaded: { ...none, install: 'installing', refused: 'failed', superseded: 'cancelled' },
  installing: { ...none, install: 'installing', installed: 'activating', refused: 'failed' },
  activating: { ...none, healthy: 'installed', unhealthy: 'rolled-back' },
  installed: none,
  failed: { ...none, retry: 'pending' },
  'rolled-back': none,
  cancelled: none,
};

/** The next state, or UPDATE_TRANSITION_INVALID: the agent never improvises a step. */
export function next(state: JobState, event: JobEvent): JobState {
  const to = TRANSITIONS[state]?.[event];
  if (to === undefined || to === null) {
    throw new HeptadError('UPDATE_TRANSITION_INVALID', `event ${event} is not allowed in state ${state}`, {
      detail: { state, event },
    });
  }
  return to;
}
