//! Connecting to a noid server, over plain HTTP/2 or TLS: the generated client with the
//! bearer token attached to every call. The CLI and the end-to-end tests use exactly this, so tests drive what users drive.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, ClientConfig};
use tokio_rustls::TlsConnector;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::tls::{self, Trust};

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
    #[error("server not reachable at {url} ({reason}): is noid-server running there? (the URL comes from NOID_URL or `noid auth setup`)")]
    NotListening { url: String, reason: String },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
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

/// Connects to `url` (e.g. `http://127.0.0.1:7777`) and authenticates with `token`; an
/// `https://` URL is verified against the system's CAs.
pub async fn connect(url: &str, token: Option<&str>) -> Result<Client, ConnectError> {
    connect_with(url, token, &Trust::System).await
}

/// Connects to `url`, verifying an `https://` server by `trust`. A plain `http://` URL with a
/// CA file or fingerprint is refused: the token would go out in clear although the caller
/// meant to check whom it talks to.
pub async fn connect_with(
    url: &str,
    token: Option<&str>,
    trust: &Trust,
) -> Result<Client, ConnectError> {
    let bad_url = |reason: String| ConnectError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| bad_url(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // Large files and outputs move at the link's speed, not one 64 KiB window per round trip.
        .initial_stream_window_size(crate::API_STREAM_WINDOW)
        .initial_connection_window_size(crate::API_CONNECTION_WINDOW)
        .http2_keep_alive_interval(Duration::from_secs(30));
    let connected = match endpoint.uri().scheme_str() {
        Some("http") if *trust != Trust::System => {
            return Err(bad_url(
                "a CA file or certificate fingerprint is set, but the URL is not https://".into(),
            ))
        }
        Some("http") => endpoint.connect().await,
        Some("https") => {
            let config = tls::client_config(trust).map_err(ConnectError::Tls)?;
            endpoint
                .connect_with_connector(tls_connector(Arc::new(config)))
                .await
        }
        _ => {
            return Err(bad_url(
                "the URL must start with http:// or https://".into(),
            ))
        }
    };
    let channel = connected.map_err(|e| {
        let (url, reason) = (url.to_string(), source_chain(&e));
        if nothing_listens(&e) {
            ConnectError::NotListening { url, reason }
        } else {
            ConnectError::Unreachable { url, reason }
        }
    })?;
    let auth = BearerToken::new(token)?;
    Ok(NoidClient::with_interceptor(channel, auth)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens TCP to the URI's host and port (443 unless given) and runs the TLS handshake over it.
fn tls_connector(
    config: Arc<ClientConfig>,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    Error = std::io::Error,
    Future = impl Send,
> + Send
       + Clone
       + 'static {
    tower::service_fn(move |uri: Uri| {
        let config = Arc::clone(&config);
        async move {
            let host = uri.host().unwrap_or_default().to_string();
            let name = tls::server_name(&host).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{host:?} is not a host name TLS can verify"),
                )
            })?;
            let port = uri.port_u16().unwrap_or(443);
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((bare, port)))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
            tcp.set_nodelay(true)?;
            let tls = TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(explain_handshake)?;
            Ok(TokioIo::new(tls))
        }
    })
}

/// A failed handshake, said so that the user knows what to do about it.
fn explain_handshake(e: std::io::Error) -> std::io::Error {
    let unverified = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::General(_)
            )
        });
    let message = if unverified {
        format!(
            "cannot verify the server's certificate ({e}): give its CA (ca_file, NOID_CA_FILE) \
             or pin its fingerprint (tls_fingerprint, NOID_TLS_FINGERPRINT)"
        )
    } else {
        format!("TLS handshake failed ({e}): does the server speak TLS on this port?")
    };
    std::io::Error::new(e.kind(), message)
}

/// A gRPC code's canonical name, as the API's documents and the gateway spell it
/// (`NOT_FOUND`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The reason an error status carries (`google.rpc.ErrorInfo`), e.g. `VM_NOT_FOUND` or
/// `CHECKPOINT_NOT_FOUND`: what a program should match on rather than the message.
pub fn error_reason(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|info| info.reason)
}

/// Whether the connection was refused or timed out: no server at that address, as opposed to
/// one that answered in a way we could not accept (TLS).
fn nothing_listens(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(io.kind(), ConnectionRefused | TimedOut | NotFound) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn source_chain(e: &dyn std::error::Error) -> String {
    with_causes(&e.to_string(), e.source())
}

/// `first`, then each error of the chain from `source` on that says something new, joined
/// by ": " (a status or an error whose causes tell how a connection broke).
pub fn with_causes(first: &str, source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut msg = first.to_string();
    let mut cur = source;
    while let Some(s) = cur {
        // Wrappers often repeat their source's words; say each thing once.
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cur = s.source();
    }
    msg
}
