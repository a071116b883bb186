import { create } from "@bufbuild/protobuf";
import { type ConfigBundle, ConfigBundleSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { bundleDigest } from "../../src/runtime/index.js";

/** A config bundle with the given content and its digest computed, as a client pushing it would send it. */
export function bundleOf(init: Parameters<typeof create<typeof ConfigBundleSchema>>[1]): ConfigBundle {
  const bundle = create(ConfigBundleSchema, init);
  bundle.digest = bundleDigest(bundle);
  return bundle;
}
