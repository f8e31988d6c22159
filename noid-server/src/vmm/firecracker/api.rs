//! Firecracker's HTTP API on its Unix socket: one short HTTP/1.1 connection per request,
//! JSON bodies, and Firecracker's `{"fault_message": ...}` turned into a readable error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::vmm::VmmError;

/// How long one API call may take (snapshot create/load of a large guest included).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Api {
    socket: PathBuf,
}

impl Api {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    pub async fn put<T: Serialize>(&self, path: &str, body: &T) -> Result<(), VmmError> {
        self.send(Method::PUT, path, body).await
    }

    pub async fn patch<T: Serialize>(&self, path: &str, body: &T) -> Result<(), VmmError> {
        self.send(Method::PATCH, path, body).await
    }

    async fn send<T: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &T,
    ) -> Result<(), VmmError> {
        let json = serde_json::to_vec(body).expect("request bodies serialize");
        self.call(method, path, Some(json)).await.map(|_| ())
    }

    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, VmmError> {
        let body = self.call(Method::GET, path, None).await?;
        serde_json::from_slice(&body)
            .map_err(|e| VmmError::Control(format!("GET {path}: unreadable answer: {e}")))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, VmmError> {
        let what = format!("{method} {path}");
        tokio::time::timeout(CALL_TIMEOUT, self.exchange(method, path, body))
            .await
            .map_err(|_| VmmError::Control(format!("{what}: no answer from Firecracker")))?
            .map_err(|e| VmmError::Control(format!("{what}: {e}")))
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, String> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| format!("API socket {}: {e}", self.socket.display()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", "localhost")
            .header("Accept", "application/json");
        if body.is_some() {
            req = req.header("Content-Type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        Err(fault(status, &bytes))
    }
}

/// Firecracker's error body is `{"fault_message": "..."}`.
fn fault(status: StatusCode, body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("fault_message")?.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    format!("{} ({})", message, status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_read_as_their_message() {
        let e = fault(
            StatusCode::BAD_REQUEST,
            br#"{"fault_message":"Cannot open the drive"}"#,
        );
        assert_eq!(e, "Cannot open the drive (400)");
        assert_eq!(
            fault(StatusCode::INTERNAL_SERVER_ERROR, b"boom"),
            "boom (500)"
        );
    }
}
