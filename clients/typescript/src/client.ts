// The client: Noid (a connection), the VMs it returns, their files and running commands.
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createReadStream, createWriteStream, promises as fsp } from "node:fs";
import { dirname, join } from "node:path";
import { NoidError, Unavailable, fromCodeName, fromServiceError } from "./errors";
import { NoidOptions, resolve } from "./config";

const CHUNK = 64 * 1024;

const definition = protoLoader.loadSync("noid/v1/service.proto", {
  includeDirs: [join(__dirname, "..", "proto")],
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const NoidService = (grpc.loadPackageDefinition(definition) as any).noid.v1.Noid as grpc.ServiceClientConstructor;

/** How a command ended, with all its output. */
export interface Result {
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
  stderrBytes: Buffer;
  exitCode: number;
  /** The signal that killed it, 0 when it exited. */
  signal: number;
  timedOut: boolean;
}

/** A piece of a running command's output. */
export interface Output {
  stream: "stdout" | "stderr";
  data: Buffer;
}

export interface Exit {
  exitCode: number;
  signal: number;
  timedOut: boolean;
}

export interface VmInfo {
  name: string;
  id: string;
  /** "running", "paused", "hibernated", ... */
  state: string;
  cpus: number;
  memoryMib: number;
  image: string;
  address: string;
  createdAt: Date;
  parentCheckpoint: string;
}

export interface Checkpoint {
  id: string;
  vm: string;
  label: string;
  createdAt: Date;
  memoryBytes: number;
  diskBytes: number;
}

export interface CreateOptions {
  image?: string;
  cpus?: number;
  memoryMib?: number;
  diskBytes?: number;
  ttlSecs?: number;
  requestId?: string;
}

export interface ExecOptions {
  /** Standard input: the command reads it, then end of input. */
  stdin?: string | Buffer;
  env?: Record<string, string>;
  cwd?: string;
  /** Kill the command after this many seconds. */
  timeout?: number;
  user?: string;
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
}

export interface SpawnOptions {
  /** Keep stdin open for write() (default true). */
  stdin?: boolean;
  env?: Record<string, string>;
  cwd?: string;
  timeout?: number;
  user?: string;
  tty?: boolean;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
/** An API time (google.protobuf.Timestamp) as a Date. */
function toDate(t: any): Date {
  return new Date(Number(t?.seconds ?? 0) * 1000 + Math.floor(Number(t?.nanos ?? 0) / 1e6));
}

function vmInfo(v: any): VmInfo {
  return {
    name: v.name, id: v.id, state: String(v.state).replace(/^VM_STATE_/, "").toLowerCase(),
    cpus: v.cpus, memoryMib: v.memory_mib, image: v.image, address: v.address,
    createdAt: toDate(v.created_at), parentCheckpoint: v.parent_checkpoint,
  };
}

function checkpointInfo(c: any): Checkpoint {
  return { id: c.id, vm: c.vm, label: c.label, createdAt: toDate(c.created_at), memoryBytes: c.memory_bytes, diskBytes: c.disk_bytes };
}

function execStart(vm: string, argv: string[], o: SpawnOptions & { stdin: boolean }): any {
  if (!Array.isArray(argv) || argv.length === 0) {
    throw new TypeError("argv is a non-empty array of strings, e.g. ['sh', '-c', 'echo hi']");
  }
  if (o.timeout !== undefined && !(o.timeout > 0)) throw new RangeError(`timeout must be positive seconds, got ${o.timeout}`);
  return {
    start: {
      vm, argv, env: o.env ?? {}, cwd: o.cwd ?? "", stdin: o.stdin, tty: o.tty ?? false,
      timeout_ms: o.timeout ? Math.max(1, Math.round(o.timeout * 1000)) : 0, user: o.user ?? "",
    },
  };
}

const idOf = (c: string | Checkpoint) => (typeof c === "string" ? c : c.id);

/** A connection to a noid server. */
export class Noid {
  private readonly client: grpc.Client & Record<string, any>;
  private readonly metadata: grpc.Metadata;

  /** With no options, the URL and token come from NOID_URL and NOID_TOKEN, else the CLI's config. */
  constructor(options: NoidOptions = {}) {
    const s = resolve(options);
    const creds = s.tls ? grpc.credentials.createSsl(s.ca ?? null) : grpc.credentials.createInsecure();
    this.client = new NoidService(s.target, creds) as any;
    this.metadata = new grpc.Metadata();
    this.metadata.set("authorization", "Bearer " + s.token);
  }

  /** @internal A unary call, its error as a NoidError. */
  call<T = any>(method: string, request: object): Promise<T> {
    return new Promise((resolvePromise, reject) => {
      this.client[method](request, this.metadata, (err: grpc.ServiceError | null, resp: T) =>
        err ? reject(fromServiceError(err)) : resolvePromise(resp));
    });
  }

  /** @internal A client-streaming call. */
  callWithStream<T = any>(method: string, requests: AsyncIterable<object>): Promise<T> {
    return new Promise((resolvePromise, reject) => {
      const stream = this.client[method](this.metadata, (err: grpc.ServiceError | null, resp: T) =>
        err ? reject(fromServiceError(err)) : resolvePromise(resp));
      (async () => {
        try {
          for await (const r of requests) {
            if (!stream.write(r)) await new Promise((ok) => stream.once("drain", ok));
          }
          stream.end();
        } catch (e) {
          stream.cancel();
          reject(e);
        }
      })();
    });
  }

  /** @internal A server-streaming call as an async iterator. */
  async *serverStream(method: string, request: object): AsyncGenerator<any> {
    const stream = this.client[method](request, this.metadata);
    try {
      for await (const msg of stream) yield msg;
    } catch (e) {
      throw fromServiceError(e);
    }
  }

  /** @internal A bidirectional call. */
  duplex(method: string): grpc.ClientDuplexStream<any, any> {
    return this.client[method](this.metadata);
  }

  close(): void {
    this.client.close();
  }

  async whoami(): Promise<string> {
    return (await this.call("WhoAmI", {})).user;
  }

  /** Creates and starts VM `name`; options left out are the server's defaults. */
  async create(name: string, o: CreateOptions = {}): Promise<Vm> {
    const vm = await this.call("CreateVm", {
      name, image: o.image ?? "", cpus: o.cpus ?? 0, memory_mib: o.memoryMib ?? 0,
      disk_bytes: o.diskBytes ?? 0, ttl_secs: o.ttlSecs ?? 0, request_id: o.requestId ?? "",
    });
    return new Vm(this, vmInfo(vm));
  }

  async get(name: string): Promise<Vm> {
    return new Vm(this, vmInfo(await this.call("GetVm", { name })));
  }

  async list(): Promise<Vm[]> {
    return (await this.call("ListVms", {})).vms.map((v: any) => new Vm(this, vmInfo(v)));
  }

  /** The caller's checkpoints (of one VM when given), newest first. */
  async checkpoints(vm = ""): Promise<Checkpoint[]> {
    return (await this.call("ListCheckpoints", { vm })).checkpoints.map(checkpointInfo);
  }

  async deleteCheckpoint(id: string): Promise<void> {
    await this.call("DeleteCheckpoint", { id });
  }

  /** Puts the checkpoint's VM back to it in place, or with `as` forks a new VM. */
  async restore(checkpoint: string | Checkpoint, as?: string): Promise<Vm> {
    const vm = await this.call("Restore", { checkpoint_id: idOf(checkpoint), new_name: as ?? "" });
    return new Vm(this, vmInfo(vm));
  }

  fork(checkpoint: string | Checkpoint, name: string): Promise<Vm> {
    return this.restore(checkpoint, name);
  }

  /** prefix-1 .. prefix-count from one checkpoint: each VM, or the error that kept it from being made. */
  async forkMany(checkpoint: string | Checkpoint, prefix: string, count: number): Promise<(Vm | NoidError)[]> {
    const resp = await this.call("ForkMany", { checkpoint_id: idOf(checkpoint), prefix, count });
    return resp.results.map((r: any) => (r.vm ? new Vm(this, vmInfo(r.vm)) : fromCodeName(r.error_code, r.error)));
  }
}

/** A VM. */
export class Vm {
  readonly name: string;
  info: VmInfo;
  readonly files: Files;

  constructor(private readonly noid: Noid, info: VmInfo) {
    this.name = info.name;
    this.info = info;
    this.files = new Files(noid, info.name);
  }

  async refresh(): Promise<VmInfo> {
    this.info = vmInfo(await this.noid.call("GetVm", { name: this.name }));
    return this.info;
  }

  async destroy(): Promise<void> {
    await this.noid.call("DeleteVm", { name: this.name });
  }

  /** Shuts the VM down; its disk, address and ports stay for start(). */
  async stop(): Promise<void> {
    this.info = vmInfo(await this.noid.call("StopVm", { name: this.name }));
  }

  /** Boots a stopped VM again from its own disk (files kept, processes not). */
  async start(): Promise<void> {
    this.info = vmInfo(await this.noid.call("StartVm", { name: this.name }));
  }

  /** Runs argv to its end; a non-zero exit is a result, not an error. */
  async exec(argv: string[], o: ExecOptions = {}): Promise<Result> {
    const p = this.spawn(argv, { ...o, stdin: o.stdin !== undefined });
    if (o.stdin !== undefined) {
      await p.write(o.stdin);
      p.closeStdin();
    }
    return p.wait(o.onStdout, o.onStderr);
  }

  /** Starts argv and returns at once: write to its stdin, iterate its output. */
  spawn(argv: string[], o: SpawnOptions = {}): Process {
    const start = execStart(this.name, argv, { ...o, stdin: o.stdin ?? true });
    return new Process(this.noid.duplex("Exec"), start, o.stdin ?? true);
  }

  async checkpoint(label = ""): Promise<Checkpoint> {
    return checkpointInfo(await this.noid.call("CreateCheckpoint", { vm: this.name, label }));
  }

  checkpoints(): Promise<Checkpoint[]> {
    return this.noid.checkpoints(this.name);
  }

  /** Puts this VM back to one of its checkpoints. */
  async restore(checkpoint: string | Checkpoint): Promise<void> {
    this.info = (await this.noid.restore(checkpoint)).info;
  }
}

/** A running command: `for await (const out of p)` for its output, then `exit`; or `wait()`. */
export class Process implements AsyncIterable<Output> {
  exit?: Exit;
  private stdinOpen: boolean;
  private readonly responses: AsyncIterator<any>;

  constructor(private readonly stream: grpc.ClientDuplexStream<any, any>, start: object, stdin: boolean) {
    this.responses = stream[Symbol.asyncIterator]();
    stream.write(start);
    this.stdinOpen = stdin;
    if (!stdin) stream.end();
  }

  get exitCode(): number | undefined {
    return this.exit?.exitCode;
  }

  async write(data: string | Buffer): Promise<void> {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    for (let i = 0; i < bytes.length; i += CHUNK) {
      if (!this.stream.write({ stdin: bytes.subarray(i, i + CHUNK) })) {
        await new Promise((ok) => this.stream.once("drain", ok));
      }
    }
  }

  closeStdin(): void {
    if (this.stdinOpen) {
      this.stdinOpen = false;
      this.stream.end();
    }
  }

  signal(signum: number): void {
    this.stream.write({ signal: signum });
  }

  resize(rows: number, cols: number): void {
    this.stream.write({ resize: { rows, cols } });
  }

  // A loop that breaks off leaves the stream open: the next one goes on where it stopped.
  // Stdin closes once the command's stream has ended.
  async *[Symbol.asyncIterator](): AsyncIterator<Output> {
    try {
      for (let next = await this.responses.next(); !next.done; next = await this.responses.next()) {
        const msg = next.value;
        if (msg.msg === "stdout") yield { stream: "stdout", data: msg.stdout };
        else if (msg.msg === "stderr") yield { stream: "stderr", data: msg.stderr };
        else if (msg.msg === "exit") {
          this.exit = { exitCode: msg.exit.code, signal: msg.exit.signal, timedOut: msg.exit.timed_out };
        }
      }
    } catch (e) {
      this.closeStdin();
      throw fromServiceError(e);
    }
    this.closeStdin();
  }

  /** Collects the rest of the output; the callbacks get it as text while it comes. */
  async wait(onStdout?: (t: string) => void, onStderr?: (t: string) => void): Promise<Result> {
    const out: Buffer[] = [], err: Buffer[] = [];
    const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    for await (const o of this) {
      (o.stream === "stdout" ? out : err).push(o.data);
      const cb = o.stream === "stdout" ? onStdout : onStderr;
      if (cb) {
        const text = decoders[o.stream].decode(o.data, { stream: true });
        if (text) cb(text);
      }
    }
    if (!this.exit) throw new Unavailable("the exec stream ended without the command's exit", "UNAVAILABLE");
    const stdoutBytes = Buffer.concat(out), stderrBytes = Buffer.concat(err);
    return {
      stdout: stdoutBytes.toString("utf8"), stderr: stderrBytes.toString("utf8"), stdoutBytes, stderrBytes,
      exitCode: this.exit.exitCode, signal: this.exit.signal, timedOut: this.exit.timedOut,
    };
  }
}

/** Files in a VM's guest, by absolute path. */
export class Files {
  constructor(private readonly noid: Noid, private readonly vm: string) {}

  private async copyIn(path: string, mode: number, chunks: AsyncIterable<Buffer>): Promise<number> {
    const vm = this.vm;
    async function* requests() {
      yield { header: { vm, path, mode } };
      for await (const data of chunks) yield { data };
      yield { end: true };
    }
    return (await this.noid.callWithStream("CopyIn", requests())).bytes_written;
  }

  /** Writes data to path (replacing it); resolves to the bytes written. */
  write(path: string, data: string | Buffer, mode = 0o644): Promise<number> {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    async function* pieces() {
      for (let i = 0; i < bytes.length; i += CHUNK) yield bytes.subarray(i, i + CHUNK);
    }
    return this.copyIn(path, mode, pieces());
  }

  async upload(localPath: string, path: string, mode?: number): Promise<number> {
    const m = mode ?? (await fsp.stat(localPath)).mode & 0o7777;
    return this.copyIn(path, m, createReadStream(localPath, { highWaterMark: CHUNK }) as AsyncIterable<Buffer>);
  }

  async read(path: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const chunk of this.noid.serverStream("CopyOut", { vm: this.vm, path })) parts.push(chunk.data);
    return Buffer.concat(parts);
  }

  async readText(path: string): Promise<string> {
    return (await this.read(path)).toString("utf8");
  }

  /** Copies path to localPath; a failed copy leaves no partial file behind. */
  async download(path: string, localPath: string): Promise<number> {
    const tmp = join(dirname(localPath), `.noid-download-${process.pid}-${Date.now()}`);
    const out = createWriteStream(tmp);
    let size = 0;
    try {
      for await (const chunk of this.noid.serverStream("CopyOut", { vm: this.vm, path })) {
        size += chunk.data.length;
        if (!out.write(chunk.data)) await new Promise<void>((ok) => out.once("drain", () => ok()));
      }
      await new Promise<void>((ok, fail) => out.end((e?: Error) => (e ? fail(e) : ok())));
      await fsp.rename(tmp, localPath);
    } catch (e) {
      out.destroy();
      await fsp.rm(tmp, { force: true });
      throw e;
    }
    return size;
  }
}
