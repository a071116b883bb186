import { create } from "@bufbuild/protobuf";
import { ProfileSchema, type Profile } from "../../gen/worker_runtime/v1/profile_pb.js";

/** Turns a run may take when its profile does not say. */
export const DEFAULT_MAX_TURNS = 20;

/**
 * The builtin profile every Runtime offers, even with no execution backend,
 * so that a companion Worker can be created (and shown NOT_CONNECTED with a
 * reason) before a provider is configured. This is its one definition:
 * backends add what only they know (model, system prompt, tools) to it.
 */
export const COMPANION_PROFILE: Profile = create(ProfileSchema, {
  name: "companion",
  description: "A general helper that can read, write and run commands in its workspace when granted.",
  maxTurns: DEFAULT_MAX_TURNS,
});
