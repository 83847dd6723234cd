// The OpenAPI 3.1 document, generated from the route table and the very schemas Fastify
// validates with: a route cannot be served without being documented, nor differently.
import type { Access } from './auth.ts';
import { STATUS_TABLE } from './errors.ts';
import type { JsonSchema } from './schemas.ts';

export interface ResponseSpec {
  description: string;
  schema?: JsonSchema;
  /** Default application/json. */
  contentType?: string;
  headers?: Record<string, { description: string; schema: JsonSchema }>;
}

/** One route as the server registers it and the document describes it. */
export interface RouteDoc {
  method: 'GET' | 'POST';
  url: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  access: Access;
  body?: JsonSchema;
  /** A body is optional (e.g. a reset to the default position). */
  bodyOptional?: boolean;
  querystring?: JsonSchema;
  /** Query string parameters that carry JSON (documented as `content: application/json`). */
  jsonQuery?: readonly string[];
  params?: JsonSchema;
  headers?: JsonSchema;
  responses: Record<number, ResponseSpec>;
  /** Error statuses this route can answer with (besides 401/403, added from `access`). */
  errors: readonly number[];
}

export function openApiDocument(routes: readonly RouteDoc[], options: { version: string; secured: boolean; errorSchema: JsonSchema }): object {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = route.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const parameters: unknown[] = [];
    const addParameters = (schema: JsonSchema | undefined, where: 'query' | 'path' | 'header'): void => {
      const properties = (schema?.properties ?? {}) as Record<string, JsonSchema>;
      const required = new Set((schema?.required ?? []) as string[]);
      for (const [name, property] of Object.entries(properties)) {
        const json = where === 'query' && route.jsonQuery?.includes(name);
        const { description, ...rest } = property;
        parameters.push({
          name: where === 'header' ? headerName(name) : name,
          in: where,
          required: where === 'path' || required.has(name),
          ...(description !== undefined && { description }),
          ...(json ? { content: { 'application/json': { schema: rest } } } : { schema: rest }),
        });
      }
    };
    addParameters(route.params, 'path');
    addParameters(route.querystring, 'query');
    addParameters(route.headers, 'header');
    const responses: Record<string, unknown> = {};
    for (const [status, response] of Object.entries(route.responses)) {
      responses[status] = {
        description: response.description,
        ...(response.headers && { headers: response.headers }),
        ...(response.schema && { content: { [response.contentType ?? 'application/json']: { schema: response.schema } } }),
        ...(!response.schema && response.contentType && { content: { [response.contentType]: { schema: { type: 'string' } } } }),
      };
    }
    const errorStatuses = new Set(route.errors);
    if (options.secured && route.access !== 'public') errorStatuses.add(401);
    if (options.secured && route.access === 'write') errorStatuses.add(403);
    for (const status of [...errorStatuses].sort()) {
      const meanings = STATUS_TABLE.filter((row) => row.status === status).map((row) => `${row.codes}: ${row.meaning}`);
      responses[String(status)] = {
        description: meanings.join('; ') || 'error',
        ...(status === 503 && { headers: { 'Retry-After': { description: 'seconds to wait before retrying', schema: { type: 'integer' } } } }),
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      };
    }
    paths[path] ??= {};
    paths[path]![route.method.toLowerCase()] = {
      operationId: route.operationId,
      summary: route.summary,
      ...(route.description !== undefined && { description: route.description }),
      tags: [route.tag],
      ...(options.secured && { security: route.access === 'public' ? [] : [{ bearer: [] }] }),
      ...(parameters.length > 0 && { parameters }),
      ...(route.body && { requestBody: { required: !route.bodyOptional, content: { 'application/json': { schema: route.body } } } }),
      responses,
    };
  }
  const table = ['| status | codes | meaning |', '| --- | --- | --- |', ...STATUS_TABLE.map((row) => `| ${row.status} | ${row.codes} | ${row.meaning} |`)].join('\n');
  return {
    openapi: '3.1.0',
    info: {
      title: 'dynamic-streams-eventstore HTTP API',
      version: options.version,
      description:
        'A DCB event store over HTTP. Positions are decimal strings in /v1 (exact beyond 2^53). Every error body is ' +
        '`{ "error": { "code", "message", ...context } }`.\n\n' +
        table +
        '\n\nWith tokens configured, every route except `/health` needs `Authorization: Bearer <token>`; the read token can read and subscribe but not append or reset consumers.',
    },
    paths,
    components: {
      schemas: { Error: options.errorSchema },
      ...(options.secured && { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } }),
    },
  };
}

function headerName(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_, dash: string, letter: string) => `${dash}${letter.toUpperCase()}`);
}
