// The `telemetry` option as users see it. Structural types only: the published declarations
// must compile for a user who has not installed @opentelemetry/api (an optional peer dependency).

/** Any OpenTelemetry TracerProvider (`@opentelemetry/api`'s interface, named structurally). */
export interface TracerProviderLike {
  getTracer(name: string, version?: string, options?: object): unknown;
}

/** Any OpenTelemetry MeterProvider (`@opentelemetry/api`'s interface, named structurally). */
export interface MeterProviderLike {
  getMeter(name: string, version?: string, options?: object): unknown;
}

/**
 * Where the store's spans and metrics go. Each provider defaults to the global one (what
 * `@opentelemetry/sdk-node` registers), so a service with the SDK started gets everything with no
 * configuration. `false` turns telemetry off. Without `@opentelemetry/api` installed there is
 * none, and it costs nothing.
 */
export type TelemetryOptions =
  | false
  | {
      tracerProvider?: TracerProviderLike;
      meterProvider?: MeterProviderLike;
    };
