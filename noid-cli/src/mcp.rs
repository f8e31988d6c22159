//! `noid mcp`: a Model Context Protocol server on stdin/stdout, so that an AI agent can use
//! noid VMs as tools (create, run a command, read and write files, checkpoint, restore or
//! fork, destroy). It calls the noid server with the CLI's own URL and token, so the agent
//! can do what that user can and no more. Stdout carries MCP messages only.

use std::collections::HashMap;

use noid::v1::{
    copy_in_request, exec_request, exec_response, CopyInHeader, CopyInRequest, CopyOutRequest,
    CreateCheckpointRequest, CreateVmRequest, DeleteVmRequest, ExecRequest, ExecStart,
    ListCheckpointsRequest, ListVmsRequest, RestoreRequest, Vm,
};
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{tool, tool_handler, tool_router, ErrorData, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_stream::StreamExt;

/// Output of a command or file beyond this many bytes is cut in the middle (its start and
/// its end are kept), with a note of how much was left out.
const MAX_TEXT: usize = 32 * 1024;

/// Serves MCP on stdin/stdout until the client hangs up.
pub async fn serve(client: noid::client::Client) -> anyhow::Result<()> {
    let service = NoidTools::new(client)
        .serve(rmcp::transport::stdio())
        .await?;
    service.waiting().await?;
    Ok(())
}

#[derive(Clone)]
struct NoidTools {
    client: noid::client::Client,
    #[allow(dead_code)] // read by the code #[tool_handler] writes
    tool_router: ToolRouter<Self>,
}

#[derive(Deserialize, JsonSchema)]
struct CreateVmArgs {
    /// 1-63 characters of a-z, 0-9 and '-', not starting with '-'.
    name: String,
    /// The image to start from (default: "default").
    image: Option<String>,
    cpus: Option<u32>,
    memory_mib: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
struct VmArg {
    /// The VM's name.
    vm: String,
}

#[derive(Deserialize, JsonSchema)]
struct RunArgs {
    /// The VM's name.
    vm: String,
    /// A shell command line, run with `sh -c`.
    command: String,
    /// Text for the command's standard input.
    stdin: Option<String>,
    /// Working directory in the guest.
    cwd: Option<String>,
    /// Extra environment variables.
    env: Option<HashMap<String, String>>,
    /// Kill the command after this many seconds.
    timeout_secs: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
struct ReadFileArgs {
    vm: String,
    /// Absolute path in the guest.
    path: String,
}

#[derive(Deserialize, JsonSchema)]
struct WriteFileArgs {
    vm: String,
    /// Absolute path in the guest; the file is replaced.
    path: String,
    content: String,
    /// Permission bits as an octal string, e.g. "755" (default "644").
    mode: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct CheckpointArgs {
    vm: String,
    label: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct RestoreArgs {
    /// The checkpoint's id (from `checkpoint` or `list_checkpoints`).
    checkpoint_id: String,
    /// Fork a new VM of this name from the checkpoint; leave out to put the checkpoint's own
    /// VM back to it in place.
    new_name: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct ListCheckpointsArgs {
    /// Only this VM's checkpoints.
    vm: Option<String>,
}

/// A tool's failure as the agent sees it: a result marked as an error, with the server's
/// message (not a protocol error: the call itself was fine).
fn failed(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

fn from_status(s: tonic::Status) -> CallToolResult {
    let reason = noid::client::error_reason(&s)
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    failed(format!("{}{reason}", s.message()))
}

fn ok_json(v: Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(
        serde_json::to_string_pretty(&v).expect("JSON values serialize"),
    )])
}

fn vm_json(vm: &Vm) -> Value {
    let state = noid::v1::VmState::try_from(vm.state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("VM_STATE_")
                .to_lowercase()
        })
        .unwrap_or_default();
    json!({
        "name": vm.name,
        "state": state,
        "image": vm.image,
        "cpus": vm.cpus,
        "memory_mib": vm.memory_mib,
        "address": vm.address,
        "parent_checkpoint": vm.parent_checkpoint,
    })
}

/// Output or a file as the agent gets it, gathered in bounded memory however much comes:
/// the first and the last `MAX_TEXT / 2` bytes, and how many there were in all.
#[derive(Default)]
struct Kept {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    total: u64,
}

impl Kept {
    fn push(&mut self, data: &[u8]) {
        let half = MAX_TEXT / 2;
        self.total += data.len() as u64;
        let to_head = half.saturating_sub(self.head.len()).min(data.len());
        self.head.extend_from_slice(&data[..to_head]);
        self.tail.extend(&data[to_head..]);
        let excess = self.tail.len().saturating_sub(half);
        self.tail.drain(..excess);
    }

    /// Lossy UTF-8, cut in the middle (with a note) past `MAX_TEXT`.
    fn text(&self) -> String {
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let kept = (self.head.len() + tail.len()) as u64;
        if kept == self.total {
            return String::from_utf8_lossy(&[self.head.as_slice(), &tail].concat()).into_owned();
        }
        format!(
            "{}\n[... {} bytes left out; the output was {} bytes ...]\n{}",
            String::from_utf8_lossy(&self.head),
            self.total - kept,
            self.total,
            String::from_utf8_lossy(&tail)
        )
    }
}

/// A file read for the agent stops after this much (`/dev/zero` never ends).
const MAX_FILE_READ: u64 = 64 << 20;

type ToolResult = Result<CallToolResult, ErrorData>;

#[tool_router]
impl NoidTools {
    fn new(client: noid::client::Client) -> Self {
        Self {
            client,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "List your noid VMs with their state and address.")]
    async fn list_vms(&self) -> ToolResult {
        let mut c = self.client.clone();
        Ok(match c.list_vms(ListVmsRequest::default()).await {
            Ok(r) => ok_json(
                json!({ "vms": r.into_inner().vms.iter().map(vm_json).collect::<Vec<_>>() }),
            ),
            Err(s) => from_status(s),
        })
    }

    #[tool(description = "Create and start a Linux microVM (a sandbox for running commands).")]
    async fn create_vm(&self, Parameters(a): Parameters<CreateVmArgs>) -> ToolResult {
        let mut c = self.client.clone();
        let req = CreateVmRequest {
            name: a.name,
            image: a.image.unwrap_or_default(),
            cpus: a.cpus.unwrap_or(0),
            memory_mib: a.memory_mib.unwrap_or(0),
            ..Default::default()
        };
        Ok(match c.create_vm(req).await {
            Ok(vm) => ok_json(vm_json(&vm.into_inner())),
            Err(s) => from_status(s),
        })
    }

    #[tool(
        description = "Run a shell command in a VM and return its stdout, stderr and exit code. \
                       Long output is cut in the middle with a note."
    )]
    async fn run_command(&self, Parameters(a): Parameters<RunArgs>) -> ToolResult {
        let mut c = self.client.clone();
        let start = ExecStart {
            vm: a.vm,
            argv: vec!["sh".into(), "-c".into(), a.command],
            env: a.env.unwrap_or_default(),
            cwd: a.cwd.unwrap_or_default(),
            stdin: a.stdin.is_some(),
            timeout_ms: a.timeout_secs.unwrap_or(0).saturating_mul(1000),
            ..Default::default()
        };
        let mut msgs = vec![ExecRequest {
            msg: Some(exec_request::Msg::Start(start)),
        }];
        if let Some(input) = a.stdin {
            msgs.push(ExecRequest {
                msg: Some(exec_request::Msg::Stdin(input.into_bytes())),
            });
        }
        let mut stream = match c.exec(tokio_stream::iter(msgs)).await {
            Ok(r) => r.into_inner(),
            Err(s) => return Ok(from_status(s)),
        };
        let (mut stdout, mut stderr, mut exit) = (Kept::default(), Kept::default(), None);
        while let Some(msg) = stream.next().await {
            match msg.map(|m| m.msg) {
                Ok(Some(exec_response::Msg::Stdout(d))) => stdout.push(&d),
                Ok(Some(exec_response::Msg::Stderr(d))) => stderr.push(&d),
                Ok(Some(exec_response::Msg::Exit(e))) => exit = Some(e),
                Ok(_) => {}
                Err(s) => return Ok(from_status(s)),
            }
        }
        let Some(exit) = exit else {
            return Ok(failed("the command's stream ended without its exit status"));
        };
        let mut out = json!({
            "exit_code": exit.code,
            "stdout": stdout.text(),
            "stderr": stderr.text(),
        });
        if exit.signal != 0 {
            out["signal"] = json!(exit.signal);
        }
        if exit.timed_out {
            out["timed_out"] = json!(true);
        }
        Ok(ok_json(out))
    }

    #[tool(description = "Read a file from a VM (as text; long files are cut in the middle).")]
    async fn read_file(&self, Parameters(a): Parameters<ReadFileArgs>) -> ToolResult {
        let mut c = self.client.clone();
        let req = CopyOutRequest {
            vm: a.vm,
            path: a.path,
        };
        let mut stream = match c.copy_out(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => return Ok(from_status(s)),
        };
        let mut data = Kept::default();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => data.push(&chunk.data),
                Err(s) => return Ok(from_status(s)),
            }
            if data.total >= MAX_FILE_READ {
                let text = format!(
                    "{}\n[stopped reading after {} MiB: the file goes on]",
                    data.text(),
                    MAX_FILE_READ >> 20
                );
                return Ok(CallToolResult::success(vec![ContentBlock::text(text)]));
            }
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(
            data.text(),
        )]))
    }

    #[tool(description = "Write a text file in a VM (replacing it).")]
    async fn write_file(&self, Parameters(a): Parameters<WriteFileArgs>) -> ToolResult {
        let mode = match a.mode.as_deref().map(|m| u32::from_str_radix(m, 8)) {
            None => 0o644,
            Some(Ok(m)) if m <= 0o7777 => m,
            Some(_) => return Ok(failed("mode must be octal permission bits, e.g. \"755\"")),
        };
        let header = CopyInHeader {
            vm: a.vm,
            path: a.path,
            mode,
            ..Default::default()
        };
        let msgs = [
            copy_in_request::Msg::Header(header),
            copy_in_request::Msg::Data(a.content.into_bytes()),
            copy_in_request::Msg::End(true),
        ]
        .map(|m| CopyInRequest { msg: Some(m) });
        let mut c = self.client.clone();
        Ok(match c.copy_in(tokio_stream::iter(msgs)).await {
            Ok(r) => {
                let r = r.into_inner();
                ok_json(json!({ "path": r.path, "bytes_written": r.bytes_written }))
            }
            Err(s) => from_status(s),
        })
    }

    #[tool(
        description = "Checkpoint a VM: save its memory and disk, while it runs on. Returns the \
                       checkpoint's id for `restore`."
    )]
    async fn checkpoint(&self, Parameters(a): Parameters<CheckpointArgs>) -> ToolResult {
        let mut c = self.client.clone();
        let req = CreateCheckpointRequest {
            vm: a.vm,
            label: a.label.unwrap_or_default(),
        };
        Ok(match c.create_checkpoint(req).await {
            Ok(r) => {
                let cp = r.into_inner();
                ok_json(json!({ "id": cp.id, "vm": cp.vm, "label": cp.label }))
            }
            Err(s) => from_status(s),
        })
    }

    #[tool(description = "List checkpoints, newest first.")]
    async fn list_checkpoints(&self, Parameters(a): Parameters<ListCheckpointsArgs>) -> ToolResult {
        let mut c = self.client.clone();
        let req = ListCheckpointsRequest {
            vm: a.vm.unwrap_or_default(),
            ..Default::default()
        };
        Ok(match c.list_checkpoints(req).await {
            Ok(r) => {
                let list: Vec<Value> = r
                    .into_inner()
                    .checkpoints
                    .iter()
                    .map(|cp| json!({ "id": cp.id, "vm": cp.vm, "label": cp.label, "created_at": cp.created_at }))
                    .collect();
                ok_json(json!({ "checkpoints": list }))
            }
            Err(s) => from_status(s),
        })
    }

    #[tool(
        description = "Restore a checkpoint: with new_name, fork a new VM from it; without, put \
                       the checkpoint's VM back to it in place."
    )]
    async fn restore(&self, Parameters(a): Parameters<RestoreArgs>) -> ToolResult {
        let mut c = self.client.clone();
        let req = RestoreRequest {
            checkpoint_id: a.checkpoint_id,
            new_name: a.new_name.unwrap_or_default(),
            ..Default::default()
        };
        Ok(match c.restore(req).await {
            Ok(vm) => ok_json(vm_json(&vm.into_inner())),
            Err(s) => from_status(s),
        })
    }

    #[tool(description = "Destroy a VM (its checkpoints stay).")]
    async fn destroy_vm(&self, Parameters(a): Parameters<VmArg>) -> ToolResult {
        let mut c = self.client.clone();
        Ok(
            match c.delete_vm(DeleteVmRequest { name: a.vm.clone() }).await {
                Ok(_) => ok_json(json!({ "destroyed": a.vm })),
                Err(s) => from_status(s),
            },
        )
    }
}

#[tool_handler]
impl ServerHandler for NoidTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "noid runs Linux microVMs. Create a VM, run shell commands in it, read and write \
             its files; checkpoint it before a risky step and restore (or fork) the checkpoint \
             to go back. Destroy VMs you no longer need.",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(pieces: &[&[u8]]) -> String {
        let mut k = Kept::default();
        for p in pieces {
            k.push(p);
        }
        k.text()
    }

    #[test]
    fn long_output_is_cut_in_the_middle_with_a_note() {
        let (a, b) = (vec![b'a'; MAX_TEXT], vec![b'b'; 1000]);
        let text = kept(&[&a, &b]);
        assert!(text.starts_with("aaa") && text.ends_with("bbb"));
        assert!(text.contains("[... 1000 bytes left out; the output was 33768 bytes ...]"));
        assert_eq!(kept(&[b"sh", b"ort"]), "short");
        // Exactly MAX_TEXT, in small pieces, is whole.
        let pieces: Vec<&[u8]> =
            std::iter::repeat_n(&b"0123456789abcdef"[..], MAX_TEXT / 16).collect();
        assert_eq!(kept(&pieces).len(), MAX_TEXT);
    }

    #[test]
    fn endless_output_keeps_only_its_ends() {
        let mut k = Kept::default();
        for i in 0..10_000u32 {
            k.push(format!("{i:08}\n").as_bytes());
        }
        assert!(k.head.len() + k.tail.len() <= MAX_TEXT);
        assert!(k.text().ends_with("00009999\n"));
        assert!(k.text().starts_with("00000000\n"));
    }
}
