//! User administration, also while the server runs. sled lets one process open the store, so
//! the admin commands (`add-user`, `rotate-token`, `list-users`) open it themselves when no
//! server runs, and otherwise send the same request over the running server's admin socket
//! (`DATA_DIR/admin.sock`, mode 0600: only the data directory's owner may manage users).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::auth::{self, AuthError};
use crate::core::ports::store::Store;

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("admin socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Remote(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    AddUser { name: String },
    RotateToken { name: String },
    ListUsers,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Token(String),
    Users(Vec<String>),
    Error(String),
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Carries out `req` on a store this process holds.
pub fn handle(store: &dyn Store, req: &Request) -> Result<Reply, AuthError> {
    Ok(match req {
        Request::AddUser { name } => Reply::Token(auth::add_user(store, name)?),
        Request::RotateToken { name } => Reply::Token(auth::rotate_token(store, name)?),
        Request::ListUsers => Reply::Users(
            store
                .list_users()
                .map_err(AuthError::Store)?
                .into_iter()
                .map(|u| u.name)
                .collect(),
        ),
    })
}

/// Serves admin requests on `path` until the task is dropped.
pub async fn serve(path: PathBuf, store: Arc<dyn Store>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(r).read_line(&mut line).await.is_err() {
                return;
            }
            let reply = match serde_json::from_str::<Request>(&line) {
                Ok(req) => {
                    handle(store.as_ref(), &req).unwrap_or_else(|e| Reply::Error(e.to_string()))
                }
                Err(e) => Reply::Error(format!("bad admin request: {e}")),
            };
            let mut out = serde_json::to_vec(&reply).expect("replies serialize");
            out.push(b'\n');
            let _ = w.write_all(&out).await;
        });
    }
}

/// Sends `req` to the server running on `data_dir`.
pub async fn call(data_dir: &Path, req: &Request) -> Result<Reply, AdminError> {
    let path = socket_path(data_dir);
    let sock_err = |source| AdminError::Socket {
        path: path.clone(),
        source,
    };
    let stream = UnixStream::connect(&path).await.map_err(sock_err)?;
    let (r, mut w) = stream.into_split();
    let mut msg = serde_json::to_vec(req).expect("requests serialize");
    msg.push(b'\n');
    w.write_all(&msg).await.map_err(sock_err)?;
    let mut line = String::new();
    BufReader::new(r)
        .read_line(&mut line)
        .await
        .map_err(sock_err)?;
    match serde_json::from_str::<Reply>(&line) {
        Ok(Reply::Error(e)) => Err(AdminError::Remote(e)),
        Ok(reply) => Ok(reply),
        Err(e) => Err(AdminError::Remote(format!(
            "bad reply from the server: {e}"
        ))),
    }
}
