import { DEVICE_ID_PATTERN } from '@heptad/protocol';
import { Type } from 'typebox';

/**
 * Names of tenants, products and device groups: letters, digits, spaces and a few marks;
 * they start and end with a letter, digit or mark, and carry no slash, quote, semicolon or
 * control character — so "Product/Group" parses unambiguously and path- or SQL-looking
 * strings are refused at the edge.
 */
export const NAME_PATTERN = '^[\\p{L}\\p{N}](?:[\\p{L}\\p{N} ._()+,:@#&-]*[\\p{L}\\p{N}._()+:@#&-])?$';
export const Name = Type.String({ minLength: 1, maxLength: 100, pattern: NAME_PATTERN });
export const Description = Type.String({
  maxLength: 1000,
  pattern: '^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f]*$',
});
export const Uuid = Type.String({ format: 'uuid', pattern: '^[0-9a-fA-F-]{36}$' });
export const DeviceId = Type.String({
  pattern: DEVICE_ID_PATTERN,
  description: '64 lowercase hex: SHA-256 of the identity key SPKI',
});
/** A product given by id or name. */
export const ProductRef = Type.String({ minLength: 1, maxLength: 100 });
/** A device group given by id or "Product/Group". */
export const DeviceGroupRef = Type.String({
  minLength: 1,
  maxLength: 201,
  description: 'device group id or "Product/Group"',
});
export const Timestamp = Type.String({ description: 'ISO-8601 UTC' });
export const Email = Type.String({
  maxLength: 254,
  pattern: '^[^\\s@/\\\\\'";]+@[^\\s@/\\\\\'";]+\\.[^\\s@/\\\\\'";]+$',
});
export const Role = Type.Union([
  Type.Literal('Administrator'),
  Type.Literal('Contributor'),
  Type.Literal('Reader'),
]);
export const OsFeed = Type.Union([Type.Literal('retail'), Type.Literal('retail-eval')]);
export const UpdatePolicy = Type.Union([Type.Literal('update-all'), Type.Literal('no-app-updates')]);
export const Limit = Type.String({
  pattern: '^(?:[1-9][0-9]{0,2}|1000)$',
  description: '1–1000 (default 100)',
});

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String(),
    detail: Type.Optional(Type.String()),
    instance: Type.Optional(Type.String()),
    requestId: Type.String(),
    errors: Type.Optional(Type.Array(Type.Object({ field: Type.String(), problem: Type.String() }))),
    deviceIds: Type.Optional(Type.Array(Type.String())),
    hint: Type.Optional(Type.String()),
  },
  { $id: 'Problem', description: 'RFC 9457 problem details with a stable Heptad error code' },
);

export const ProblemRef = Type.Ref('Problem');

/** Standard error responses attached to every route for the OpenAPI document. */
export function errorResponses(...statuses: number[]): Record<number, typeof ProblemRef> {
  const out: Record<number, typeof ProblemRef> = {};
  for (const s of [400, 401, 403, 500, ...statuses]) out[s] = ProblemRef;
  return out;
}

export const Empty = Type.Null({ description: 'no content' });

/**
 * A nullable string in a RESPONSE schema, as a JSON type array rather than anyOf: the serializer
 * (fast-json-stringify) runs a full validator to pick an anyOf branch on every response, a type
 * array it picks by typeof. `format` is kept for the OpenAPI document only.
 */
export function NullableString(options: { format?: 'uuid' | 'date-time'; description?: string } = {}) {
  return Type.Unsafe<string | null>({ type: ['string', 'null'], ...options });
}
export const NullableUuid = NullableString({ format: 'uuid' });
export const NullableTimestamp = NullableString({ description: 'ISO-8601 UTC' });
