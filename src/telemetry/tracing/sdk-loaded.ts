/**
 * Set on `globalThis` by tracing-sdk.ts when it is evaluated, so a test (or
 * an operator's debugger) can tell whether this process loaded the
 * OpenTelemetry SDK at all: with tracing off it must not.
 */
export const SDK_LOADED: unique symbol = Symbol.for("worker-runtime.tracing.sdk-loaded");

/** Whether the tracing SDK module has been loaded in this process. */
export function tracingSdkLoaded(): boolean {
  return (globalThis as Record<symbol, unknown>)[SDK_LOADED] === true;
}
