import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { DeviceSessions } from '../broker/mqtt-broker.ts';
import type { Store } from '../store/store.ts';
import type { UpdateMetadataHooks } from '../tuf/tuf-service.ts';

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** What route modules get from the composition root (app.ts). */
export interface RouteDeps {
  readonly store: Store;
  readonly clock: () => Date;
  /** live broker sessions, ended when a device is quarantined or unclaimed */
  readonly sessions: DeviceSessions;
  /** update metadata (TUF): changes that alter what devices must run call these in their transaction */
  readonly updates: UpdateMetadataHooks;
}
