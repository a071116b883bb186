/** A FileStoreFaults.beforeLink that refuses every hard link as a file system without them does (FAT, exFAT, some network mounts). */
export function refuseLink(): never {
  throw Object.assign(new Error("operation not permitted, link"), { code: "EPERM" });
}
