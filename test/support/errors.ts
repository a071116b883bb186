import { ConnectError, type Code } from "@connectrpc/connect";
import { ErrorDetailSchema, type ErrorDetail, type ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";

/** Runs `call`, expects a ConnectError, and returns it with its typed detail. */
export async function expectError(call: () => Promise<unknown>): Promise<{ error: ConnectError; detail: ErrorDetail | undefined }> {
  try {
    await call();
  } catch (error) {
    const connectError = ConnectError.from(error);
    return { error: connectError, detail: connectError.findDetails(ErrorDetailSchema)[0] };
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** Expects a call to fail with `code` and the typed `reason`. */
export async function expectReason(call: () => Promise<unknown>, code: Code, reason: ErrorReason): Promise<ErrorDetail> {
  const { error, detail } = await expectError(call);
  if (error.code !== code || detail?.reason !== reason) {
    throw new Error(`expected code ${code} / reason ${reason}, got code ${error.code} / reason ${detail?.reason}: ${error.message}`);
  }
  return detail;
}

/** A call's answer, or the ConnectError it failed with (for asserting on either without try/catch). */
export async function answerOrError<T>(call: Promise<T>): Promise<T | ConnectError> {
  return call.then(
    (answer) => answer,
    (error: unknown) => ConnectError.from(error),
  );
}
