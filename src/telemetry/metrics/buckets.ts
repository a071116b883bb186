/**
 * Histogram bucket bounds. The GenAI ones are the OpenTelemetry semantic
 * conventions' advisory boundaries, so dashboards built for them fit.
 */
export const BUCKETS = {
  /** gen_ai.client.operation.duration and time_to_first_chunk (seconds). */
  genAiSeconds: [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92],
  /** gen_ai.client.token.usage (tokens). */
  genAiTokens: [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864],
  /** A run, from start to end (seconds): a quick answer up to a long tool loop. */
  runSeconds: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
  /** RPCs, and the Backend's calls to runtimes (seconds); the RPC conventions' advice. */
  rpcSeconds: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
  /** Store appends and fsyncs (seconds): memory store in microseconds, disks in milliseconds. */
  storeSeconds: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  /** Items per batch (events per delivered message, records per group commit); 512 is the largest watch batch. */
  batchSizes: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
} as const;
