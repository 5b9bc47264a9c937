import {
  DEVICE_ID_PATTERN,
  ERROR_REGISTRY,
  type ErrorCode,
  type FieldError,
  HeptadError,
  isHeptadError,
} from '@heptad/protocol';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { NAME_PATTERN } from './schemas.ts';

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail?: string;
  instance: string;
  requestId: string;
  hint: string;
  errors?: FieldError[];
  deviceIds?: string[];
}

/** Fastify's own error codes mapped onto ours; anything else becomes INTERNAL_ERROR. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'REQUEST_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'REQUEST_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'REQUEST_INVALID',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'REQUEST_MALFORMED_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'REQUEST_MALFORMED_JSON',
  FST_ERR_VALIDATION: 'REQUEST_INVALID',
  FST_ERR_NOT_FOUND: 'ROUTE_NOT_FOUND',
};

/** Plain words for the patterns users meet most, instead of the raw regular expression. */
const PATTERN_PROBLEMS: Record<string, string> = {
  [NAME_PATTERN]:
    'must be 1–100 letters, digits, spaces or . _ ( ) + , : @ # & -, starting with a letter or digit (no / \\ quotes or ;)',
  [DEVICE_ID_PATTERN]: 'must be a device id: 64 lowercase hex characters',
};

function fieldErrorsOf(err: FastifyError): FieldError[] {
  return (err.validation ?? []).map((v) => {
    const pattern = (v.params as { pattern?: string } | undefined)?.pattern;
    if (v.keyword === 'pattern' && pattern !== undefined && PATTERN_PROBLEMS[pattern]) {
      return {
        field: `${err.validationContext ?? 'body'}${v.instancePath}`,
        problem: PATTERN_PROBLEMS[pattern],
      };
    }
    const missing = (v.params as { missingProperty?: string } | undefined)?.missingProperty;
    const extra = (v.params as { additionalProperty?: string } | undefined)?.additionalProperty;
    const base = `${err.validationContext ?? 'body'}${v.instancePath}`;
    const field = missing ? `${base}/${missing}` : extra ? `${base}/${extra}` : base;
    return { field, problem: extra ? 'is not allowed' : (v.message ?? 'is invalid') };
  });
}

/** Turns any error into a HeptadError; unknown errors become INTERNAL_ERROR (cause kept for the log). */
export function toHeptadError(err: unknown): HeptadError {
  if (isHeptadError(err)) return err;
  const fe = err as FastifyError;
  if (fe && typeof fe === 'object') {
    if (fe.validation) {
      return new HeptadError('REQUEST_INVALID', undefined, { fields: fieldErrorsOf(fe), cause: err });
    }
    const mapped = fe.code ? FASTIFY_CODES[fe.code] : undefined;
    if (mapped) return new HeptadError(mapped, undefined, { cause: err });
    // JSON syntax errors from the body parser and prototype-poisoning refusals arrive as plain 400s.
    if (
      fe.statusCode === 400 &&
      (err instanceof SyntaxError || fe.code === undefined || /JSON|proto/i.test(fe.message))
    ) {
      return new HeptadError('REQUEST_MALFORMED_JSON', undefined, { cause: err });
    }
    if (fe.statusCode === 413) return new HeptadError('REQUEST_BODY_TOO_LARGE', undefined, { cause: err });
    if (fe.statusCode === 415)
      return new HeptadError('REQUEST_UNSUPPORTED_MEDIA_TYPE', undefined, { cause: err });
  }
  return new HeptadError('INTERNAL_ERROR', undefined, { cause: err });
}

export function toProblem(err: HeptadError, request: FastifyRequest): ProblemBody {
  const spec = ERROR_REGISTRY[err.code];
  const body: ProblemBody = {
    type: `urn:heptad:error:${err.code}`,
    title: spec.title,
    status: spec.status,
    code: err.code,
    instance: request.url.split('?')[0] ?? '/',
    requestId: request.id,
    hint: spec.hint,
  };
  // A 5xx says only "internal error, see request id": causes stay in the log.
  if (spec.status < 500 && err.message !== spec.title) body.detail = err.message;
  if (err.fields.length > 0) body.errors = [...err.fields];
  const ids = err.detail['deviceIds'];
  if (Array.isArray(ids)) body.deviceIds = ids.map(String);
  return body;
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, err: HeptadError): FastifyReply {
  const problem = toProblem(err, request);
  return reply
    .code(problem.status)
    .header('content-type', 'application/problem+json; charset=utf-8')
    .serializer(JSON.stringify)
    .send(problem);
}
