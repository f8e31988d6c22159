//! The gateway's routes, in one table that both the router (`rest::router`) and the OpenAPI
//! document (`api::openapi`) are made from. A unary route names the RPC it calls, which path
//! parameters fill which fields of its request message, and whether the JSON body is the
//! rest of the message or one field of it (grpc-gateway's `body: "*"` and `body: "field"`).

use axum::routing::MethodFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    pub fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Delete => "delete",
        }
    }

    pub(super) fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// How a route is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// One RPC of the gRPC service (`Route::rpc`).
    Unary,
    /// A command with its output captured (`rest::exec`).
    Exec,
    /// A file's bytes as the request or response body (`rest::files`).
    Files,
    /// A WebSocket (`rest::streams`).
    WebSocket,
    /// Restore, checked against the VM the path names.
    Restore,
    Metrics,
    OpenApi,
    /// The web console's page and files (`rest::web`), public.
    WebConsole,
}

/// Where a unary route's request message takes the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    /// The body is the message (less the fields the path gives); an empty body is `{}`.
    Message,
    /// The body is this field of the message.
    Field(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub verb: Verb,
    /// axum's syntax: `/vms/:name`.
    pub path: &'static str,
    pub kind: RouteKind,
    /// The RPC a unary route calls, e.g. "CreateVm".
    pub rpc: &'static str,
    /// Path parameter -> request field.
    pub params: &'static [(&'static str, &'static str)],
    pub body: Body,
    /// The HTTP status of success.
    pub ok: u16,
    pub summary: &'static str,
}

const fn unary(
    verb: Verb,
    path: &'static str,
    rpc: &'static str,
    params: &'static [(&'static str, &'static str)],
    body: Body,
    ok: u16,
    summary: &'static str,
) -> Route {
    Route {
        verb,
        path,
        kind: RouteKind::Unary,
        rpc,
        params,
        body,
        ok,
        summary,
    }
}

const fn other(
    verb: Verb,
    path: &'static str,
    kind: RouteKind,
    ok: u16,
    summary: &'static str,
) -> Route {
    Route {
        kind,
        ..unary(verb, path, "", &[], Body::None, ok, summary)
    }
}

use Body::{Field, Message};
use Verb::{Delete, Get, Post, Put};

const NAME: &[(&str, &str)] = &[("name", "name")];
const VM: &[(&str, &str)] = &[("name", "vm")];
const ID: &[(&str, &str)] = &[("id", "id")];

static ROUTES: &[Route] = &[
    unary(Get, "/health", "Health", &[], Body::None, 200, "Whether the server serves (no token needed)"),
    unary(Get, "/info", "GetServerInfo", &[], Body::None, 200, "The server's version, VMM, image and VM size limits"),
    unary(Get, "/whoami", "WhoAmI", &[], Body::None, 200, "The user the token belongs to"),
    unary(Get, "/vms", "ListVms", &[], Body::None, 200, "List your VMs"),
    unary(Post, "/vms", "CreateVm", &[], Message, 201, "Create a VM and wait until it is ready"),
    unary(Get, "/vms/:name", "GetVm", NAME, Body::None, 200, "Show a VM"),
    unary(Delete, "/vms/:name", "DeleteVm", NAME, Body::None, 204, "Destroy a VM"),
    unary(Post, "/vms/:name/pause", "PauseVm", NAME, Body::None, 200, "Stop a VM's vCPUs until it is resumed"),
    unary(Post, "/vms/:name/hibernate", "HibernateVm", NAME, Body::None, 200, "Save the VM to disk and stop its VMM (it holds no memory or CPU) until it wakes"),
    unary(Post, "/vms/:name/wake", "WakeVm", NAME, Body::None, 200, "Bring a hibernated VM back as it was"),
    unary(Post, "/vms/:name/stop", "StopVm", NAME, Body::None, 200, "Shut the VM down, keeping its disk, address and ports"),
    unary(Post, "/vms/:name/start", "StartVm", NAME, Body::None, 200, "Boot a stopped VM again from its own disk"),
    unary(Put, "/vms/:name/time_limits", "SetTimeLimits", NAME, Message, 200, "Set the VM's time limit (ttl_secs from now, on_expiry) and idle timeout (idle_timeout_secs)"),
    unary(Post, "/vms/:name/resume", "ResumeVm", NAME, Body::None, 200, "Let a paused VM run again"),
    unary(Put, "/vms/:name/network_policy", "SetNetworkPolicy", VM, Field("policy"), 200, "Replace the VM's network policy (applies at once); the body is a NetworkPolicy"),
    unary(Post, "/vms/:name/ports", "AddPort", VM, Message, 200, "Publish a port: TCP to host_port on the host reaches guest_port"),
    unary(Delete, "/vms/:name/ports/:host_port", "RemovePort", &[("name", "vm"), ("host_port", "host_port")], Body::None, 200, "Unpublish a port"),
    unary(Get, "/vms/:name/checkpoints", "ListCheckpoints", VM, Body::None, 200, "List the VM's checkpoints, newest first"),
    unary(Post, "/vms/:name/checkpoints", "CreateCheckpoint", VM, Message, 201, "Checkpoint the VM (optional body: {\"label\": ...})"),
    other(Post, "/vms/:name/restore", RouteKind::Restore, 200, "Restore a checkpoint of this VM in place, or as new_name; the body is a RestoreRequest"),
    unary(Get, "/checkpoints", "ListCheckpoints", &[], Body::None, 200, "List the checkpoints of all your VMs, newest first"),
    unary(Get, "/checkpoints/:id", "GetCheckpoint", ID, Body::None, 200, "Show a checkpoint"),
    unary(Delete, "/checkpoints/:id", "DeleteCheckpoint", ID, Body::None, 204, "Delete a checkpoint"),
    unary(Post, "/checkpoints/:id/restore", "Restore", &[("id", "checkpoint_id")], Message, 200, "Restore the checkpoint in place, or as new_name"),
    unary(Post, "/checkpoints/:id/forks", "ForkMany", &[("id", "checkpoint_id")], Message, 200, "Fork the checkpoint into count new VMs named prefix-1..prefix-count; each result is a VM or its error"),
    unary(Put, "/vms/:name/checkpoint_retention", "SetCheckpointRetention", NAME, Field("retention"), 200, "Set how many of the VM's checkpoints are kept (keep_last) and for how long (max_age_secs); the body is a CheckpointRetention"),
    unary(Post, "/sessions", "StartSession", &[], Message, 201, "Start a command as an exec session (detached); the body is a StartSessionRequest"),
    unary(Get, "/vms/:name/sessions", "ListSessions", VM, Body::None, 200, "List the VM's exec sessions"),
    unary(Post, "/vms/:name/sessions/:id/kill", "KillSession", &[("name", "vm"), ("id", "session")], Message, 200, "Signal an exec session (optional body: {\"signal\": 9}; default SIGTERM)"),
    unary(Get, "/images", "ListImages", &[], Body::None, 200, "List the images VMs can start from"),
    unary(Get, "/images/:name", "GetImage", NAME, Body::None, 200, "Show an image: source, sizes, run settings"),
    unary(Delete, "/images/:name", "DeleteImage", NAME, Body::None, 204, "Remove an image (refused while a VM or checkpoint uses it)"),
    other(Post, "/vms/:name/exec", RouteKind::Exec, 200, "Run a command; stdout and stderr are captured up to 1 MiB each (truncated flag)"),
    other(Get, "/vms/:name/files", RouteKind::Files, 200, "Download the file at ?path= (absolute guest path) as application/octet-stream"),
    other(Put, "/vms/:name/files", RouteKind::Files, 201, "Upload the request body to ?path= [&mode=644][&name=]; the file changes only once the whole body arrived"),
    other(Get, "/exec/:name", RouteKind::WebSocket, 101, "WebSocket: a streaming exec (first frame: the command as JSON; binary frames by channel: 0 stdin, 1 stdout, 2 stderr, 4 resize; the exit status as a last JSON frame); the token also as subprotocol bearer.TOKEN (offer noid too) or ?token="),
    other(Get, "/console/:name", RouteKind::WebSocket, 101, "WebSocket: the VM's serial console (binary frames both ways; a text frame {\"resize\": {\"rows\": R, \"cols\": C}} sets its size); the token also as subprotocol bearer.TOKEN (offer noid too) or ?token="),
    other(Get, "/logs/:name", RouteKind::WebSocket, 101, "WebSocket: console output since boot, then live with ?follow=true; ?tail=N; ?since=RFC3339; ?timestamps=true starts each line with its time; the token also as subprotocol bearer.TOKEN (offer noid too) or ?token="),
    other(Get, "/metrics", RouteKind::Metrics, 200, "Prometheus metrics (text format)"),
    other(Get, "/openapi.json", RouteKind::OpenApi, 200, "This document"),
    other(Get, "/ui", RouteKind::WebConsole, 200, "The web console (a page: your VMs and their consoles in the browser)"),
    other(Get, "/ui/:file", RouteKind::WebConsole, 200, "The web console's scripts and styles"),
];

/// Every route of the gateway.
pub fn routes() -> &'static [Route] {
    ROUTES
}

/// Whether `path` is an instance of the route pattern `pattern` (`:x` matches one segment).
pub fn matches(pattern: &str, path: &str) -> bool {
    let (mut p, mut q) = (pattern.split('/'), path.split('/'));
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with(':') && !b.is_empty() || a == b => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_segments() {
        assert!(matches("/console/:name", "/console/web"));
        assert!(!matches("/console/:name", "/console/"));
        assert!(!matches("/console/:name", "/console/web/x"));
        assert!(!matches("/console/:name", "/vms/web"));
        assert!(matches("/vms", "/vms"));
    }
}
