/** Thrown for a command line the user must fix; main prints it without a stack (exit 2). */
export class UsageError extends Error {
  override readonly name: string = "UsageError";
}
