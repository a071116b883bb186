import { type Context, type ContextManager, ROOT_CONTEXT } from "@opentelemetry/api";
import { AsyncLocalStorage } from "node:async_hooks";

/**
 * The smallest real context manager (what @opentelemetry/context-async-hooks
 * does): what an embedder installs to have spans active across awaits. The
 * runtime installs none (trace contexts travel explicitly); tests use this
 * one to check that code reading the active span still works for such an
 * embedder. Register it with `context.setGlobalContextManager`, and call
 * `context.disable()` after.
 */
export class StorageContextManager implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A) {
    return this.storage.run(ctx, () => fn.apply(thisArg, args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.storage.disable();
    return this;
  }
}
