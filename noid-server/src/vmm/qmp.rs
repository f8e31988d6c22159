//! A minimal QMP client: greeting, capability negotiation, one command at a time.

use std::path::Path;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::VmmError;

pub struct Qmp {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
    /// Events that arrived while waiting for a command's answer, oldest first.
    events: std::collections::VecDeque<Value>,
}

impl Qmp {
    pub async fn connect(socket: &Path) -> Result<Self, VmmError> {
        let stream = UnixStream::connect(socket).await?;
        let (r, writer) = stream.into_split();
        let mut qmp = Self {
            reader: BufReader::new(r),
            writer,
            events: Default::default(),
        };
        qmp.read_message().await?; // greeting
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    async fn read_message(&mut self) -> Result<Value, VmmError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(VmmError::Control("QMP connection closed".into()));
        }
        serde_json::from_str(&line).map_err(|e| VmmError::Control(format!("QMP: {e}")))
    }

    /// Waits for the next event for which `matches` holds (earlier events are dropped).
    pub async fn wait_event(
        &mut self,
        matches: impl Fn(&Value) -> bool,
        timeout: std::time::Duration,
    ) -> Result<Value, VmmError> {
        while let Some(ev) = self.events.pop_front() {
            if matches(&ev) {
                return Ok(ev);
            }
        }
        tokio::time::timeout(timeout, async {
            loop {
                let msg = self.read_message().await?;
                if msg.get("event").is_some() && matches(&msg) {
                    return Ok(msg);
                }
            }
        })
        .await
        .map_err(|_| VmmError::Control("timed out waiting for a QMP event".into()))?
    }

    /// QEMU's run state ("running", "paused", "inmigrate", ...).
    pub async fn status(&mut self) -> Result<String, VmmError> {
        let status = self.execute("query-status", json!({})).await?;
        Ok(status
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or("unknown")
            .to_string())
    }

    /// Runs `command` and returns its `return` value; events are kept for `wait_event`.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, VmmError> {
        let mut msg = json!({ "execute": command, "arguments": arguments }).to_string();
        msg.push('\n');
        self.writer.write_all(msg.as_bytes()).await?;
        loop {
            let reply = self.read_message().await?;
            if reply.get("event").is_some() {
                self.events.push_back(reply);
                continue;
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                let desc = err.get("desc").and_then(Value::as_str).unwrap_or("error");
                return Err(VmmError::Control(format!("QMP {command}: {desc}")));
            }
        }
    }
}
