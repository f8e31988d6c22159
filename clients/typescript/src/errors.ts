// Errors from the noid server, one class per kind of failure, chosen by the gRPC status code;
// each carries the server's message and its ErrorInfo reason (VM_NOT_FOUND, ...).
import { Metadata, status } from "@grpc/grpc-js";
import * as protobuf from "protobufjs";

export class NoidError extends Error {
  /** The gRPC status code's name, e.g. "NOT_FOUND". */
  readonly code: string;
  /** The server's reason, e.g. "VM_NOT_FOUND"; empty when it gave none. */
  readonly reason: string;
  constructor(message: string, code = "UNKNOWN", reason = "") {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.reason = reason;
  }
}
export class InvalidArgument extends NoidError {}
export class NotFound extends NoidError {}
export class AlreadyExists extends NoidError {}
export class FailedPrecondition extends NoidError {}
export class PermissionDenied extends NoidError {}
export class Unauthenticated extends NoidError {}
export class ResourceExhausted extends NoidError {}
export class Unavailable extends NoidError {}
export class DeadlineExceeded extends NoidError {}
export class Cancelled extends NoidError {}

const byCode: Record<string, typeof NoidError> = {
  INVALID_ARGUMENT: InvalidArgument,
  OUT_OF_RANGE: InvalidArgument,
  NOT_FOUND: NotFound,
  ALREADY_EXISTS: AlreadyExists,
  FAILED_PRECONDITION: FailedPrecondition,
  PERMISSION_DENIED: PermissionDenied,
  UNAUTHENTICATED: Unauthenticated,
  RESOURCE_EXHAUSTED: ResourceExhausted,
  UNAVAILABLE: Unavailable,
  DEADLINE_EXCEEDED: DeadlineExceeded,
  CANCELLED: Cancelled,
};

// google.rpc.Status and ErrorInfo, the parts read here.
const rpc = protobuf.Root.fromJSON({
  nested: {
    Status: {
      fields: {
        code: { type: "int32", id: 1 },
        message: { type: "string", id: 2 },
        details: { rule: "repeated", type: "Any", id: 3 },
      },
    },
    Any: { fields: { type_url: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } },
    ErrorInfo: { fields: { reason: { type: "string", id: 1 }, domain: { type: "string", id: 2 } } },
  },
});
const Status = rpc.lookupType("Status");
const ErrorInfo = rpc.lookupType("ErrorInfo");

function reasonOf(metadata?: Metadata): string {
  const raw = metadata?.get("grpc-status-details-bin")[0];
  if (!raw || typeof raw === "string") return "";
  try {
    const s = Status.decode(raw) as unknown as { details: { type_url: string; value: Uint8Array }[] };
    for (const d of s.details) {
      if (d.type_url.endsWith("/google.rpc.ErrorInfo")) {
        return (ErrorInfo.decode(d.value) as unknown as { reason: string }).reason;
      }
    }
  } catch {
    // Not a status we can read: no reason.
  }
  return "";
}

/** A status code given by name (as ForkMany reports each fork's) as its error. */
export function fromCodeName(code: string, message: string): NoidError {
  const Cls = byCode[code] ?? NoidError;
  return new Cls(message, code);
}

/** The NoidError for a failed gRPC call. */
export function fromServiceError(e: unknown): NoidError {
  const err = e as { code?: number; details?: string; message?: string; metadata?: Metadata };
  if (typeof err?.code !== "number") {
    return new NoidError(String(err?.message ?? e));
  }
  const code = status[err.code] ?? "UNKNOWN";
  const Cls = byCode[code] ?? NoidError;
  return new Cls(err.details || err.message || code, code, reasonOf(err.metadata));
}
