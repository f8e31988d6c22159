"""Drives `noid mcp` with the official MCP Python SDK, as an agent's host would: initialize,
tools/list, then tools/call of every tool against a real server and VM.

Usage: mcp_client.py NOID_BINARY   (NOID_URL and NOID_TOKEN in the environment)
"""
import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

noid = sys.argv[1]
params = StdioServerParameters(command=noid, args=["mcp"], env={
    "NOID_URL": os.environ["NOID_URL"], "NOID_TOKEN": os.environ["NOID_TOKEN"],
    "NOID_CONFIG_FILE": "/nonexistent/config.toml"})


def text(result):
    assert len(result.content) == 1, result
    return result.content[0].text


async def call(session, tool, **args):
    result = await session.call_tool(tool, args)
    assert not result.is_error, f"{tool}: {text(result)}"
    body = text(result)
    try:
        return json.loads(body)
    except ValueError:
        return body


async def main():
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name, init
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert sorted(tools) == sorted([
                "list_vms", "create_vm", "run_command", "read_file", "write_file",
                "checkpoint", "list_checkpoints", "restore", "destroy_vm"]), sorted(tools)
            assert "command" in tools["run_command"].input_schema["properties"]
            assert tools["run_command"].input_schema["required"] == ["vm", "command"] or \
                sorted(tools["run_command"].input_schema["required"]) == ["command", "vm"]

            vm = await call(session, "create_vm", name="agent")
            assert vm["name"] == "agent" and vm["state"] == "running", vm
            listed = await call(session, "list_vms")
            assert [v["name"] for v in listed["vms"]] == ["agent"], listed

            r = await call(session, "run_command", vm="agent",
                           command="read x; echo got:$x; echo oops >&2; exit 3", stdin="hi\n")
            assert r == {"exit_code": 3, "stdout": "got:hi\n", "stderr": "oops\n"}, r
            r = await call(session, "run_command", vm="agent", command="seq 1 100000")
            assert "bytes left out" in r["stdout"] and r["stdout"].endswith("100000\n"), \
                r["stdout"][-200:]
            r = await call(session, "run_command", vm="agent", command="sleep 30",
                           timeout_secs=1)
            assert r.get("timed_out") is True, r

            w = await call(session, "write_file", vm="agent", path="/root/notes.txt",
                           content="from the agent\n")
            assert w["bytes_written"] == 15, w
            assert await call(session, "read_file", vm="agent", path="/root/notes.txt") == \
                "from the agent\n"

            # A file that never ends is read only so far, in bounded memory.
            zero = await call(session, "read_file", vm="agent", path="/dev/zero")
            assert zero.endswith("[stopped reading after 64 MiB: the file goes on]"), zero[-200:]
            assert "bytes left out" in zero and len(zero) < 100_000, len(zero)

            cp = await call(session, "checkpoint", vm="agent", label="before")
            cps = await call(session, "list_checkpoints", vm="agent")
            assert [c["id"] for c in cps["checkpoints"]] == [cp["id"]], cps
            await call(session, "run_command", vm="agent", command="rm /root/notes.txt")
            restored = await call(session, "restore", checkpoint_id=cp["id"])
            assert restored["name"] == "agent", restored
            assert await call(session, "read_file", vm="agent", path="/root/notes.txt") == \
                "from the agent\n"
            fork = await call(session, "restore", checkpoint_id=cp["id"], new_name="agent-2")
            assert fork["name"] == "agent-2" and fork["parent_checkpoint"] == cp["id"], fork

            # Errors are results the agent can read, not broken calls.
            bad = await session.call_tool("read_file", {"vm": "agent", "path": "/nope"})
            assert bad.is_error and "/nope" in text(bad), bad
            bad = await session.call_tool("create_vm", {"name": "agent"})
            assert bad.is_error and "VM_ALREADY_EXISTS" in text(bad), text(bad)

            for name in ("agent", "agent-2"):
                assert await call(session, "destroy_vm", vm=name) == {"destroyed": name}
            assert (await call(session, "list_vms"))["vms"] == []
    print("mcp: ok")


asyncio.run(main())
