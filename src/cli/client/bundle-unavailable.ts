/**
 * The client's own sentence for a BUNDLE_UNAVAILABLE refusal, from its
 * metadata (`bundle_id`, `digest`, `cause`): which bundle, why the runtime
 * cannot serve it, and what the user does about it. The runtime's message
 * speaks of pushing to the runtime; a CLI user may be behind a Backend
 * whose --bundles-dir is where the bundle comes from, so both ways are named.
 */
export function describeBundleUnavailable(metadata: Readonly<Record<string, string>>): string {
  const digest = metadata["digest"] ? ` (digest ${metadata["digest"]})` : "";
  const bundle = `config bundle "${metadata["bundle_id"] ?? ""}"${digest}`;
  switch (metadata["cause"]) {
    case "damaged":
      return (
        `${bundle} cannot be used: the runtime's stored copy is damaged; ` +
        "push the same bundle again (a Backend pushes a bundle of its --bundles-dir when a worker is next created on it)"
      );
    case "invalid":
      return (
        `${bundle} cannot be used: it breaks a rule added since it was stored ` +
        "(`worker-runtime runtime diagnostics` names it); push a corrected bundle under a new id and create new workers on it"
      );
    default:
      // "missing", or a cause this client does not know yet: the bundle is not there to use.
      return `${bundle} is not on the runtime; push it again, or check that the Backend's --bundles-dir holds it`;
  }
}
