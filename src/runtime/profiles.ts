import { create } from "@bufbuild/protobuf";
import { ProfileSchema, type Profile } from "../../gen/worker_runtime/v1/profile_pb.js";

/**
 * The builtin profile every Runtime offers, even with no execution backend,
 * so that a companion Worker can be created (and shown NOT_CONNECTED with a
 * reason) before a provider is configured. Backends supply their own,
 * fuller definition of it.
 */
export const COMPANION_PROFILE: Profile = create(ProfileSchema, {
  name: "companion",
  description: "A general-purpose assistant for conversation.",
  maxTurns: 8,
});
