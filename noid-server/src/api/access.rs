//! Who may call what, for both APIs: one tower layer that turns the caller's bearer token into
//! a `User` in the request's extensions before any handler runs, and refuses the request when
//! it has none, unless its path is on the API's explicit list of public ones. Handlers only
//! read the `User` (`caller`). On the routes that say so, WebSockets, whose browser clients
//! cannot set headers, the token may also come as a subprotocol (`bearer.TOKEN`, which keeps
//! it out of URLs and logs) or in the query string (`?token=`). The layer also
//! writes the audit trail (`audit`), refusals and state-changing calls, and counts every
//! call by API, method and result.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::codegen::http;
use tracing::Instrument;

use super::audit;

use crate::core::{CoreError, Manager, User};

/// An API's rules: its public paths, where a WebSocket's token counts, and how it refuses.
pub trait Rules: Send + Sync + 'static {
    type Body: Send + 'static;
    /// Callable without a token.
    fn is_public(&self, path: &str) -> bool;
    /// Takes its token from a `bearer.TOKEN` subprotocol or `?token=` when the header has none.
    fn takes_websocket_token(&self, path: &str) -> bool;
    /// The API's answer to a request without a valid token.
    fn refuse(&self, error: CoreError) -> http::Response<Self::Body>;
    /// The call's name for the audit trail when it changes state (none: it only reads).
    fn audited(&self, method: &http::Method, path: &str) -> Option<String>;
    /// The API's name in the request counts (`grpc`, `rest`).
    fn api(&self) -> &'static str;
    /// The call's method in the request counts: one of a bounded set (an RPC, a route
    /// template), never anything a client can make up.
    fn counted_as(&self, method: &http::Method, path: &str) -> String;
}

/// The layer, for an API's `Rules`.
pub struct Authenticate<R> {
    core: Arc<Manager>,
    rules: Arc<R>,
}

impl<R> Authenticate<R> {
    pub fn new(core: Arc<Manager>, rules: R) -> Self {
        Self {
            core,
            rules: Arc::new(rules),
        }
    }
}

impl<R> Clone for Authenticate<R> {
    fn clone(&self) -> Self {
        Self {
            core: Arc::clone(&self.core),
            rules: Arc::clone(&self.rules),
        }
    }
}

impl<S, R> tower::Layer<S> for Authenticate<R> {
    type Service = AuthenticateService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthenticateService {
            inner,
            access: self.clone(),
        }
    }
}

pub struct AuthenticateService<S, R> {
    inner: S,
    access: Authenticate<R>,
}

impl<S: Clone, R> Clone for AuthenticateService<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            access: self.access.clone(),
        }
    }
}

/// The `authorization` header's value, or for routes that take one, the token a WebSocket
/// offered as its `bearer.TOKEN` subprotocol, else the query's token.
fn credentials<B, R: Rules>(req: &http::Request<B>, rules: &R) -> Option<String> {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    header.or_else(|| {
        if !rules.takes_websocket_token(req.uri().path()) {
            return None;
        }
        let subprotocol = req
            .headers()
            .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|p| p.trim().strip_prefix("bearer.").map(str::to_string));
        let query = || {
            req.uri().query()?.split('&').find_map(|kv| {
                let token = kv.strip_prefix("token=")?;
                Some(token.to_string())
            })
        };
        subprotocol.or_else(query).map(|t| format!("Bearer {t}"))
    })
}

impl<S, R, B> tower::Service<http::Request<B>> for AuthenticateService<S, R>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R::Body>> + Clone + Send,
    S::Future: Send + 'static,
    R: Rules,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let rules = &self.access.rules;
        let path = req.uri().path().to_string();
        let found = credentials(&req, rules.as_ref());
        let peer = audit::peer(&req);
        let core = Arc::clone(&self.access.core);
        let (api, counted_as) = (rules.api(), rules.counted_as(req.method(), &path));
        let owner = match core.authenticate(found.as_deref()) {
            Ok(user) => {
                req.extensions_mut().insert(user.clone());
                user.0
            }
            Err(_) if rules.is_public(&path) => "-".to_string(),
            Err(e) => {
                audit::refused(&path, &peer, &e);
                core.metrics.request(api, counted_as, "UNAUTHENTICATED");
                let refused = rules.refuse(e);
                return Box::pin(async move { Ok(refused) });
            }
        };
        let audited = rules.audited(req.method(), &path);
        // Every line the call logs carries who made it and what it is (JSON logs show them).
        let span = tracing::info_span!(
            "call",
            owner = %owner,
            operation = %audited.as_deref().unwrap_or(&path)
        );
        // The service that was made ready is the one that serves; its clone waits for the
        // next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = std::time::Instant::now();
        let serving = inner.call(req).instrument(span);
        Box::pin(async move {
            let resp = serving.await?;
            core.metrics.request(api, counted_as, audit::result(&resp));
            if let Some(operation) = audited {
                audit::call(&owner, &operation, &peer, &resp, started.elapsed());
            }
            Ok(resp)
        })
    }
}

/// The authenticated caller of a request that passed the layer (the `User` in its
/// extensions); none means it came by a public path without a token.
pub fn caller(found: Option<&User>) -> Result<User, CoreError> {
    found
        .cloned()
        .ok_or_else(|| crate::auth::AuthError::MissingToken.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ws;
    impl Rules for Ws {
        type Body = ();
        fn is_public(&self, _: &str) -> bool {
            false
        }
        fn takes_websocket_token(&self, path: &str) -> bool {
            path.starts_with("/ws/")
        }
        fn refuse(&self, _: CoreError) -> http::Response<()> {
            http::Response::new(())
        }
        fn audited(&self, _: &http::Method, _: &str) -> Option<String> {
            None
        }
        fn api(&self) -> &'static str {
            "test"
        }
        fn counted_as(&self, _: &http::Method, _: &str) -> String {
            String::new()
        }
    }

    fn request(uri: &str, header: Option<&str>) -> http::Request<()> {
        let mut b = http::Request::builder().uri(uri);
        if let Some(h) = header {
            b = b.header("authorization", h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn query_tokens_count_only_where_the_rules_say() {
        let got = |uri, h| credentials(&request(uri, h), &Ws);
        assert_eq!(got("/ws/x?token=t1", None).as_deref(), Some("Bearer t1"));
        assert_eq!(got("/vms?token=t1", None), None);
        assert_eq!(
            got("/ws/x?token=t1", Some("Bearer t2")).as_deref(),
            Some("Bearer t2"),
            "the header wins"
        );
        assert_eq!(
            got("/ws/x?follow=true&token=t3", None).as_deref(),
            Some("Bearer t3")
        );
    }

    #[test]
    fn a_websocket_may_offer_its_token_as_a_subprotocol() {
        let offered = |uri: &str, protocols: &str| {
            let req = http::Request::builder()
                .uri(uri)
                .header("sec-websocket-protocol", protocols)
                .body(())
                .unwrap();
            credentials(&req, &Ws)
        };
        assert_eq!(
            offered("/ws/x", "noid, bearer.t4").as_deref(),
            Some("Bearer t4")
        );
        assert_eq!(
            offered("/ws/x?token=t5", "bearer.t4,noid").as_deref(),
            Some("Bearer t4"),
            "the subprotocol wins over the query"
        );
        assert_eq!(offered("/ws/x", "noid").as_deref(), None);
        assert_eq!(offered("/vms", "noid, bearer.t4"), None);
    }
}
