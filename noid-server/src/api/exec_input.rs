//! What a client sends on an Exec stream after `start`, checked. A client that goes away
//! only closes the command's stdin (the command runs on). A client that breaks the protocol
//! (a second `start`, stdin for a command started without `start.stdin`, a message the
//! server cannot take, such as one above the size limit)
//! gets an error instead of an exit status, and its command is killed: nothing it sent is
//! silently dropped.

use futures::{Stream, StreamExt};
use noid::v1 as pb;
use tokio::sync::oneshot;
use tonic::{Code, Status, Streaming};

use super::convert;
use crate::core::ExecInput;

/// The input for the core, and the error that ends the call when the client broke the
/// protocol; `stdin_open` is the start's `stdin`.
pub fn checked(
    inbound: Streaming<pb::ExecRequest>,
    stdin_open: bool,
) -> (
    impl Stream<Item = ExecInput> + Send + 'static,
    oneshot::Receiver<Status>,
) {
    let (fault_tx, fault_rx) = oneshot::channel();
    let mut fault_tx = Some(fault_tx);
    let input = inbound
        .map(move |m| match m {
            Ok(m) => misfit(&m, stdin_open).map_or_else(|| Ok(convert::exec_input(m)), Err),
            Err(status) => Err(fault(status)),
        })
        .scan(false, move |ended, item| {
            if *ended {
                return futures::future::ready(None);
            }
            let next = match item {
                Ok(input) => Some(input),
                Err(None) => None,
                Err(Some(status)) => {
                    *ended = true;
                    tracing::warn!("an Exec client broke the protocol: {}", status.message());
                    if let Some(tx) = fault_tx.take() {
                        let _ = tx.send(status);
                    }
                    Some(Some(ExecInput::Signal(libc::SIGKILL)))
                }
            };
            futures::future::ready(next)
        })
        .filter_map(futures::future::ready);
    (input, fault_rx)
}

/// What is wrong with a message after `start`, if anything.
fn misfit(m: &pb::ExecRequest, stdin_open: bool) -> Option<Option<Status>> {
    use pb::exec_request::Msg;
    match &m.msg {
        Some(Msg::Start(_)) => Some(Some(Status::invalid_argument(
            "an Exec stream takes one `start` message, first; this one came later",
        ))),
        Some(Msg::Stdin(_)) if !stdin_open => Some(Some(Status::invalid_argument(
            "stdin was sent for a command started without `start.stdin`: set it to keep the \
             command's stdin open",
        ))),
        _ => None,
    }
}

/// What a broken inbound stream means: None when the client went away, the error to report
/// when it sent something the server cannot take.
fn fault(status: Status) -> Option<Status> {
    match status.code() {
        // tonic's decoder: a message above the limit.
        Code::OutOfRange => Some(Status::resource_exhausted(format!(
            "a message of the Exec stream is too large ({}); send stdin in chunks of at most \
             {} MiB",
            status.message(),
            super::MAX_MESSAGE_BYTES >> 20
        ))),
        // A message that does not decode.
        Code::Internal | Code::InvalidArgument => Some(Status::invalid_argument(format!(
            "a message of the Exec stream cannot be read: {}",
            status.message()
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_that_make_no_sense_are_refused() {
        use pb::exec_request::Msg;
        let msg = |m| pb::ExecRequest { msg: Some(m) };
        let second_start = msg(Msg::Start(Default::default()));
        assert!(misfit(&second_start, true).is_some());
        let stdin = msg(Msg::Stdin(b"x".to_vec()));
        assert!(misfit(&stdin, false).is_some());
        assert!(misfit(&stdin, true).is_none());
        assert!(misfit(&msg(Msg::Signal(2)), false).is_none());
    }

    #[test]
    fn faults_are_told_from_departures() {
        assert!(fault(Status::cancelled("gone")).is_none());
        assert!(fault(Status::unknown("h2 protocol error")).is_none());
        let big = fault(Status::out_of_range("found 104857600 bytes")).unwrap();
        assert_eq!(big.code(), Code::ResourceExhausted);
        assert!(big.message().contains("104857600"), "{}", big.message());
        assert_eq!(
            fault(Status::internal("failed to decode")).unwrap().code(),
            Code::InvalidArgument
        );
    }
}
