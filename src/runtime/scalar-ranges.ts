/**
 * The value checks protobuf-es applies to 32-bit and float scalars (its
 * reflect API refuses what fails them), shared by the planned encoder and
 * the planned clone, which send such a value to protobuf-es instead.
 */

const INT32_MIN = -0x80000000;
const INT32_MAX = 0x7fffffff;
const UINT32_MAX = 0xffffffff;
const FLOAT32_MAX = 3.4028234663852886e38;

/** An integer number in int32's range. */
export function isInt32(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX;
}

/** An integer number in uint32's range. */
export function isUint32(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= UINT32_MAX;
}

/** A number a float field holds: NaN, an infinity, or a finite value within float's range. */
export function isFloat(value: unknown): value is number {
  return typeof value === "number" && !(Number.isFinite(value) && Math.abs(value) > FLOAT32_MAX);
}
