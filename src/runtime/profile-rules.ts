import type { Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import { invalidArgument } from "./errors.js";

/** Profile names: like ids, short and printable (they are echoed in errors and listed in capabilities). */
const PROFILE_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Most model turns one run of a profile may take (0 = the default,
 * DEFAULT_MAX_TURNS): every run is bounded (SPEC §2.7), and a uint32 would
 * let a looping model run for billions of paid requests.
 */
export const MAX_PROFILE_TURNS = 1000;

/**
 * Checks the rules every profile keeps, wherever it comes from (a config
 * bundle or the operator's `--profiles` file), so neither source can set
 * what the other refuses. Throws INVALID_ARGUMENT naming the field, under
 * `prefix` (e.g. `bundle.profiles[2]`; empty for the field name alone).
 */
export function checkProfileRules(profile: Profile, prefix: string): void {
  const at = (field: string) => (prefix === "" ? field : `${prefix}.${field}`);
  if (!PROFILE_NAME.test(profile.name)) throw invalidArgument(at("name"), "must be 1-64 characters of [A-Za-z0-9._-]");
  if (profile.maxTurns > MAX_PROFILE_TURNS) {
    throw invalidArgument(at("max_turns"), `is ${profile.maxTurns}; at most ${MAX_PROFILE_TURNS} (0 uses the default)`);
  }
  // NaN and infinities reach the provider as null (JSON), a negative value as a rejected request on every run.
  if (profile.temperature !== undefined && !(Number.isFinite(profile.temperature) && profile.temperature >= 0)) {
    throw invalidArgument(at("temperature"), "must be a finite number, not negative");
  }
  // A name here that the profile does not offer is a typo (e.g. the capability "shell.exec" for
  // the tool "run_command"): it would gate nothing, so the calls it meant would run unasked.
  for (const [j, tool] of profile.approvalRequiredTools.entries()) {
    if (!profile.tools.includes(tool)) {
      throw invalidArgument(at(`approval_required_tools[${j}]`), `"${tool.slice(0, 64)}" is not one of the profile's tools`);
    }
  }
}
