/** The web console's server side: serving its built bundle from the Backend. */
export { createStaticFilesHandler, type StaticFilesHandler } from "./static-files.js";
export { backendArgs, DEFAULT_CONSOLE_PORT, DEFAULT_DATA_DIR, DEFAULT_GRPC_PORT } from "./start-args.js";
