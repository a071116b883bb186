import { StoreDataError } from "../../runtime/index.js";

/**
 * A record or snapshot failed its checksum when read. The message names the
 * file relative to the data dir (never an absolute host path), so it can be
 * shown in diagnostics.
 */
export class StoreCorruptionError extends StoreDataError {
  override readonly name = "StoreCorruptionError";
}
