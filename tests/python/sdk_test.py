"""The Python SDK (clients/python, installed with pip into a fresh virtualenv) through a whole
lifecycle against a real server: sync and asyncio.

Usage: sdk_test.py URL TOKEN   (also read from NOID_URL/NOID_TOKEN when not given)
"""
import asyncio
import os
import sys
import tempfile
from datetime import datetime, timedelta, timezone

import noid
from noid import AlreadyExists, AsyncNoid, InvalidArgument, Noid, NotFound, Unauthenticated

url, token = sys.argv[1:3]


def expect(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError(f"{fn.__name__}{args} did not raise {exc.__name__}")


def sync_lifecycle():
    client = Noid(url, token)
    assert client.whoami() == "sdk"
    with client.create("sdk-a") as vm:
        assert vm.info.state == "running", vm.info
        assert vm.info.image == "default"
        # Times are aware datetimes made from the API's Timestamps.
        age = datetime.now(timezone.utc) - vm.info.created_at
        assert timedelta(0) <= age < timedelta(minutes=5), vm.info.created_at

        # Output, stdin, exit code, env and cwd.
        r = vm.exec(["sh", "-c", "wc -c; echo err >&2; echo $GREETING; pwd; exit 3"],
                    stdin=b"x" * 200_000, env={"GREETING": "hi"}, cwd="/tmp")
        assert r.stdout.split() == ["200000", "hi", "/tmp"], r
        assert r.stderr == "err\n" and r.exit_code == 3 and not r.ok, r
        r = vm.exec(["sleep", "30"], timeout=0.5)
        assert r.timed_out and r.signal == 9, r
        r = vm.exec(["no-such-program"])
        assert r.exit_code == 127, r

        # Streaming: callbacks as the output comes, and an interactive process.
        seen = []
        r = vm.exec(["sh", "-c", "for i in 1 2 3; do echo line$i; done"], on_stdout=seen.append)
        assert "".join(seen) == "line1\nline2\nline3\n" == r.stdout, (seen, r)
        proc = vm.spawn(["sh", "-c", "while read l; do echo got:$l; done; exit 7"])
        proc.write("one\n")
        pieces = iter(proc)
        assert next(pieces).text == "got:one\n"
        proc.write(b"two\n")
        proc.close_stdin()
        rest = proc.wait()
        assert rest.stdout == "got:two\n" and rest.exit_code == 7, rest

        # A loop that breaks off leaves the command and its stdin alone.
        proc = vm.spawn(["sh", "-c", "echo a; read x; echo b:$x"])
        for out in proc:
            assert out.text == "a\n", out
            break
        proc.write("z\n")
        rest = proc.wait()
        assert rest.stdout == "b:z\n" and rest.exit_code == 0, rest

        # Files.
        assert vm.files.write("/root/data.bin", bytes(range(256)) * 1000) == 256_000
        assert vm.files.read("/root/data.bin") == bytes(range(256)) * 1000
        with tempfile.TemporaryDirectory() as d:
            local = os.path.join(d, "up.sh")
            with open(local, "w") as f:
                f.write("#!/bin/sh\necho uploaded\n")
            os.chmod(local, 0o755)
            vm.files.upload(local, "/root/up.sh")
            assert vm.exec(["/root/up.sh"]).stdout == "uploaded\n"
            out = os.path.join(d, "down.bin")
            assert vm.files.download("/root/data.bin", out) == 256_000
            e = expect(NotFound, vm.files.download, "/root/nope", os.path.join(d, "x"))
            assert os.listdir(d) == ["up.sh", "down.bin"] or sorted(os.listdir(d)) == [
                "down.bin", "up.sh"], os.listdir(d)
        expect(NotFound, vm.files.read, "/root/missing")

        # Checkpoint, restore in place, fork, fork many.
        vm.files.write("/root/mark", "before")
        cp = vm.checkpoint("sdk")
        assert cp.vm == "sdk-a" and cp.label == "sdk", cp
        assert cp.created_at >= vm.info.created_at, (cp.created_at, vm.info.created_at)
        assert [x.id for x in vm.checkpoints()] == [cp.id]
        vm.files.write("/root/mark", "after")
        vm.restore(cp)
        assert vm.files.read_text("/root/mark") == "before"
        with client.fork(cp, "sdk-fork") as fork:
            assert fork.info.parent_checkpoint == cp.id
            fork.files.write("/root/mark", "fork")
            assert vm.files.read_text("/root/mark") == "before"
            assert fork.files.read_text("/root/mark") == "fork"
        many = client.fork_many(cp, "sdk-m", 2)
        assert [m.name for m in many] == ["sdk-m-1", "sdk-m-2"], many
        for m in many:
            assert m.exec(["cat", "/root/mark"]).stdout == "before"
            m.destroy()

        # Stopped and started again: a new boot of the same disk.
        vm.stop()
        assert vm.info.state == "stopped", vm.info
        vm.start()
        assert vm.info.state == "running", vm.info
        assert vm.files.read_text("/root/mark") == "before"

        # Errors by kind, with the server's reason.
        e = expect(NotFound, client.get, "nope")
        assert e.reason == "VM_NOT_FOUND" and e.code == "NOT_FOUND", (e.reason, e.code)
        assert "nope" in str(e)
        e = expect(AlreadyExists, client.create, "sdk-a")
        assert e.reason == "VM_ALREADY_EXISTS", e.reason
        expect(InvalidArgument, client.create, "Bad_Name")
        expect(InvalidArgument, client.restore, "no-such-checkpoint")
        e = expect(NotFound, client.restore, "f" * len(cp.id))
        assert e.reason == "CHECKPOINT_NOT_FOUND", e.reason
        assert isinstance(e, noid.NoidError)
    expect(NotFound, client.get, "sdk-a")
    client.delete_checkpoint(cp.id)
    assert client.checkpoints() == []
    expect(Unauthenticated, Noid(url, "not-a-token").list)
    client.close()


async def async_lifecycle():
    async with AsyncNoid(url, token) as client:
        async with await client.create("sdk-async") as vm:
            r = await vm.exec(["sh", "-c", "cat; exit 4"], stdin="from asyncio\n")
            assert r.stdout == "from asyncio\n" and r.exit_code == 4, r
            proc = await vm.spawn(["sh", "-c", "read l; echo got:$l; echo e >&2"])
            await proc.write("x\n")
            got = [(o.stream, o.text) async for o in proc]
            assert sorted(got) == [("stderr", "e\n"), ("stdout", "got:x\n")], got
            assert proc.exit_code == 0
            await vm.files.write("/root/a", "async file")
            assert await vm.files.read_text("/root/a") == "async file"
            cp = await vm.checkpoint()
            fork = await client.fork(cp, "sdk-async-fork")
            assert (await fork.files.read_text("/root/a")) == "async file"
            await fork.stop()
            assert fork.info.state == "stopped", fork.info
            await fork.start()
            assert (await fork.files.read_text("/root/a")) == "async file"
            await fork.destroy()
            try:
                await client.get("nope")
                raise AssertionError("get of an unknown VM succeeded")
            except NotFound as e:
                assert e.reason == "VM_NOT_FOUND"
        assert [v.name for v in await client.list()] == []
        for c in await client.checkpoints():
            await client.delete_checkpoint(c.id)


sync_lifecycle()
asyncio.run(async_lifecycle())
print("python sdk: ok")
