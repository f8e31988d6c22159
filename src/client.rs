//! Connecting to a noid server: the generated client with the bearer token attached to every
//! call. The CLI and the end-to-end tests use exactly this, so tests drive what users drive.

use std::time::Duration;

use thiserror::Error;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::v1::noid_client::NoidClient;

/// The control-plane client with authentication attached.
pub type Client = NoidClient<InterceptedService<Channel, BearerToken>>;

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("invalid server URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("the token contains characters that cannot be sent in a header")]
    BadToken,
    #[error("cannot connect to {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    pub fn new(token: Option<&str>) -> Result<Self, ConnectError> {
        match token {
            None | Some("") => Ok(Self(None)),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(|v| Self(Some(v)))
                .map_err(|_| ConnectError::BadToken),
        }
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// Connects to `url` (e.g. `http://127.0.0.1:7777`) and authenticates with `token`.
pub async fn connect(url: &str, token: Option<&str>) -> Result<Client, ConnectError> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| ConnectError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // Large files and outputs move at the link's speed, not one 64 KiB window per round trip.
        .initial_stream_window_size(crate::API_STREAM_WINDOW)
        .initial_connection_window_size(crate::API_CONNECTION_WINDOW)
        .http2_keep_alive_interval(Duration::from_secs(30));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| ConnectError::Unreachable {
            url: url.to_string(),
            reason: source_chain(&e),
        })?;
    let auth = BearerToken::new(token)?;
    Ok(NoidClient::with_interceptor(channel, auth)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        cur = s.source();
    }
    msg
}
