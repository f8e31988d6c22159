// The TypeScript SDK for noid: create microVMs, run commands in them, move files,
// checkpoint, restore and fork them. See README.md.
export { Noid, Vm, Files, Process } from "./client";
export type { Result, Output, Exit, VmInfo, Checkpoint, CreateOptions, ExecOptions, SpawnOptions } from "./client";
export type { NoidOptions } from "./config";
export {
  NoidError, InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, PermissionDenied,
  Unauthenticated, ResourceExhausted, Unavailable, DeadlineExceeded, Cancelled,
} from "./errors";
