// The TypeScript SDK (clients/typescript, packed with `npm pack` and installed from the
// tarball) through a whole lifecycle against a real server. Compiled with tsc --strict, so
// the SDK's types are checked as a user's code would use them.
//
// Usage: node sdk_test.js URL TOKEN
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AlreadyExists, InvalidArgument, Noid, NoidError, NotFound, Output, Unauthenticated, Vm } from "noid-sdk";

const [url, token] = process.argv.slice(2);

function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error("check failed: " + what);
}

async function expectError<T extends NoidError>(cls: new (...a: any[]) => T, p: Promise<unknown>): Promise<T> {
  try {
    await p;
  } catch (e) {
    check(e instanceof cls, `${String(e)} is a ${cls.name}`);
    return e as T;
  }
  throw new Error(`did not fail with ${cls.name}`);
}

async function main(): Promise<void> {
  const noid = new Noid({ url, token });
  check((await noid.whoami()) === "ts", "whoami");
  const vm: Vm = await noid.create("ts-a");
  check(vm.info.state === "running" && vm.info.image === "default", JSON.stringify(vm.info));
  const age = Date.now() - vm.info.createdAt.getTime();
  check(vm.info.createdAt instanceof Date && age >= -1000 && age < 300_000, `created ${vm.info.createdAt.toISOString()}`);

  const r = await vm.exec(["sh", "-c", "wc -c; echo err >&2; echo $GREETING; pwd; exit 3"],
    { stdin: Buffer.alloc(200_000, 120), env: { GREETING: "hi" }, cwd: "/tmp" });
  check(r.stdout.split(/\s+/).filter(Boolean).join(" ") === "200000 hi /tmp", r.stdout);
  check(r.stderr === "err\n" && r.exitCode === 3, JSON.stringify(r));
  const timed = await vm.exec(["sleep", "30"], { timeout: 0.5 });
  check(timed.timedOut && timed.signal === 9, JSON.stringify(timed));
  check((await vm.exec(["no-such-program"])).exitCode === 127, "127");

  const seen: string[] = [];
  const streamed = await vm.exec(["sh", "-c", "for i in 1 2 3; do echo line$i; done"], { onStdout: (t) => seen.push(t) });
  check(seen.join("") === "line1\nline2\nline3\n" && streamed.stdout === seen.join(""), seen.join("|"));

  // An interactive process, read with an async iterator.
  const p = vm.spawn(["sh", "-c", "while read l; do echo got:$l; done; exit 7"]);
  await p.write("one\n");
  const it = p[Symbol.asyncIterator]();
  const first = (await it.next()).value as Output;
  check(first.data.toString() === "got:one\n", first.data.toString());
  await p.write(Buffer.from("two\n"));
  p.closeStdin();
  const rest: string[] = [];
  for (let n = await it.next(); !n.done; n = await it.next()) rest.push((n.value as Output).data.toString());
  check(rest.join("") === "got:two\n" && p.exitCode === 7, `${rest.join("")} ${p.exitCode}`);

  // A loop that breaks off leaves the command and its stdin alone.
  const q = vm.spawn(["sh", "-c", "echo a; read x; echo b:$x"]);
  for await (const o of q) {
    check(o.data.toString() === "a\n", o.data.toString());
    break;
  }
  await q.write("z\n");
  const qr = await q.wait();
  check(qr.stdout === "b:z\n" && qr.exitCode === 0, JSON.stringify(qr));

  // Files.
  const blob = Buffer.alloc(256_000, 7);
  check((await vm.files.write("/root/data.bin", blob)) === 256_000, "write");
  check((await vm.files.read("/root/data.bin")).equals(blob), "read");
  const dir = mkdtempSync(join(tmpdir(), "noid-ts-"));
  writeFileSync(join(dir, "up.sh"), "#!/bin/sh\necho uploaded\n", { mode: 0o755 });
  await vm.files.upload(join(dir, "up.sh"), "/root/up.sh");
  check((await vm.exec(["/root/up.sh"])).stdout === "uploaded\n", "upload");
  check((await vm.files.download("/root/data.bin", join(dir, "down.bin"))) === 256_000, "download");
  check(readFileSync(join(dir, "down.bin")).equals(blob), "downloaded bytes");
  await expectError(NotFound, vm.files.download("/root/nope", join(dir, "x")));
  check(readdirSync(dir).sort().join(",") === "down.bin,up.sh", readdirSync(dir).join(","));

  // Checkpoint, restore in place, fork, fork many.
  await vm.files.write("/root/mark", "before");
  const cp = await vm.checkpoint("ts");
  check(cp.vm === "ts-a" && cp.label === "ts", JSON.stringify(cp));
  await vm.files.write("/root/mark", "after");
  await vm.restore(cp);
  check((await vm.files.readText("/root/mark")) === "before", "restored");
  const fork = await noid.fork(cp, "ts-fork");
  check(fork.info.parentCheckpoint === cp.id, "fork's parent");
  await fork.files.write("/root/mark", "fork");
  check((await vm.files.readText("/root/mark")) === "before", "source untouched");
  await fork.destroy();
  const many = await noid.forkMany(cp, "ts-m", 2);
  check(many.map((m) => (m instanceof Vm ? m.name : String(m))).join(",") === "ts-m-1,ts-m-2", "fork many");
  for (const m of many) if (m instanceof Vm) await m.destroy();
  // The state as the last call left it (not as an earlier check narrowed it).
  const state = (v: Vm): string => v.info.state;
  await vm.stop();
  check(state(vm) === "stopped", `stopped: ${state(vm)}`);
  await vm.start();
  check(state(vm) === "running", `started: ${state(vm)}`);
  check((await vm.files.readText("/root/mark")) === "before", "the disk kept across stop and start");

  // Errors by kind, with the server's reason.
  const nf = await expectError(NotFound, noid.get("nope"));
  check(nf.reason === "VM_NOT_FOUND" && nf.code === "NOT_FOUND" && nf.message.includes("nope"), nf.reason);
  check((await expectError(AlreadyExists, noid.create("ts-a"))).reason === "VM_ALREADY_EXISTS", "exists");
  await expectError(InvalidArgument, noid.create("Bad_Name"));
  check((await expectError(NotFound, noid.restore("f".repeat(cp.id.length)))).reason === "CHECKPOINT_NOT_FOUND", "cp");
  await expectError(Unauthenticated, new Noid({ url, token: "not-a-token" }).list());

  await vm.destroy();
  check((await noid.list()).length === 0, "all gone");
  for (const c of await noid.checkpoints()) await noid.deleteCheckpoint(c.id);
  noid.close();
  console.log("typescript sdk: ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
