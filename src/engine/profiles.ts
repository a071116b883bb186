import { clone, create, fromJson, type JsonValue, toBinary } from "@bufbuild/protobuf";
import { ProfileSchema, type Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import { COMPANION_PROFILE, checkProfileRules, DEFAULT_MAX_TURNS, MAX_BUNDLE_BYTES, RuntimeError } from "../runtime/index.js";
import { CONFIG_FILE_MAX_BYTES, OperatorFileError, readOperatorFile } from "../files/index.js";
import { BUILTIN_TOOL_NAMES } from "./tools/tool-registry.js";

export { DEFAULT_MAX_TURNS };

const COMPANION_PROMPT = [
  "You are a helpful companion working inside a workspace on the user's behalf.",
  "Answer clearly and briefly. When tools are available, use them to look at",
  "files before you describe them, and change files only when the user asks you to.",
  "Paths are relative to the workspace root. If a tool reports an error, read it",
  "and adjust instead of repeating the same call.",
].join(" ");

/**
 * The builtin profile every runtime offers (the core's COMPANION_PROFILE)
 * with what this backend adds: model, prompt and tools. Its tool list names
 * every builtin tool; each is still offered only when the worker holds the
 * tool's capability, so a worker created without capabilities simply chats.
 */
export function companionProfile(model: string): Profile {
  const profile = clone(ProfileSchema, COMPANION_PROFILE);
  profile.model = model;
  profile.systemPrompt = COMPANION_PROMPT;
  profile.tools = [...BUILTIN_TOOL_NAMES];
  return profile;
}

/**
 * Fills what a profile left unset (model, max_turns) so the run loop never
 * has to guess, and checks it: the tool names it lists, and every rule a
 * config bundle's profile keeps (checkProfileRules, and the bundle's size),
 * so an operator's profile cannot run what a pushed one may not.
 */
export function completeProfile(profile: Profile, defaultModel: string): Profile {
  if (!profile.name) throw new ProfileConfigError("a profile needs a name");
  const label = `profile "${profile.name.slice(0, 64)}"`;
  const unknown = [...profile.tools, ...profile.approvalRequiredTools].filter(
    (name) => !(BUILTIN_TOOL_NAMES as readonly string[]).includes(name),
  );
  if (unknown.length > 0) {
    throw new ProfileConfigError(`${label} names unknown tools: ${unknown.join(", ")}`);
  }
  try {
    checkProfileRules(profile, "");
  } catch (error) {
    if (error instanceof RuntimeError) throw new ProfileConfigError(`${label}: ${error.message}`, { cause: error });
    throw error;
  }
  const bytes = toBinary(ProfileSchema, profile).byteLength;
  if (bytes > MAX_BUNDLE_BYTES) {
    throw new ProfileConfigError(`${label}: is ${bytes} bytes encoded; at most ${MAX_BUNDLE_BYTES} (as a whole config bundle)`);
  }
  // Host secrets reach only the runs of bundle profiles (ExecutionOffer.policyOf): here they would be silently ignored.
  for (const field of ["secret_names", "provider_api_key_secret"] as const) {
    const set = field === "secret_names" ? profile.secretNames.length > 0 : profile.providerApiKeySecret !== "";
    if (set) {
      throw new ProfileConfigError(
        `${label}: ${field}: only config bundle profiles use host secrets; a --profiles profile uses the runtime's own provider key`,
      );
    }
  }
  return create(ProfileSchema, {
    ...profile,
    model: profile.model || defaultModel,
    maxTurns: profile.maxTurns || DEFAULT_MAX_TURNS,
  });
}

/**
 * Loads profiles from a JSON file: `{"profiles": [{...}]}` or a bare array,
 * each entry in the Profile message's JSON form (proto or camelCase field
 * names, e.g. "system_prompt" or "systemPrompt"). Unknown fields are errors,
 * so a typo never silently drops a setting.
 */
export async function loadProfilesFile(path: string, defaultModel: string): Promise<Profile[]> {
  const text = await readProfilesFile(path);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new ProfileConfigError(`profiles file ${path} is not valid JSON`, { cause });
  }
  const list = Array.isArray(parsed) ? parsed : isRecord(parsed) ? parsed.profiles : undefined;
  if (!Array.isArray(list)) {
    throw new ProfileConfigError(`profiles file ${path} must hold an array or {"profiles": [...]}`);
  }
  return list.map((entry: JsonValue, index) => {
    try {
      return completeProfile(fromJson(ProfileSchema, entry), defaultModel);
    } catch (cause) {
      if (cause instanceof ProfileConfigError) throw cause;
      const detail = cause instanceof Error ? cause.message : String(cause);
      throw new ProfileConfigError(`profiles file ${path}, entry ${index}: ${detail}`, { cause });
    }
  });
}

/**
 * The file's text, within CONFIG_FILE_MAX_BYTES (the bound of a `--bundles-dir`
 * file, which holds profiles too); a FIFO or a larger file is a
 * ProfileConfigError, never waited on or read whole. I/O errors are thrown.
 */
async function readProfilesFile(path: string): Promise<string> {
  try {
    return (await readOperatorFile("--profiles", path, CONFIG_FILE_MAX_BYTES)).bytes.toString("utf8");
  } catch (error) {
    throw error instanceof OperatorFileError ? new ProfileConfigError(error.message) : error;
  }
}

/** A profile definition is unusable; the message says which and why. */
export class ProfileConfigError extends Error {
  override readonly name = "ProfileConfigError";
}

function isRecord(value: unknown): value is Record<string, JsonValue> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
