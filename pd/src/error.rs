//! What can go wrong talking to PD, in words a user can act on. Every variant names the
//! endpoint it concerns (and the method, where there is one).

use std::time::Duration;

use tonic::Code;

/// An error from the PD client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PdError {
    /// `connect` was given no endpoint.
    #[error("no PD endpoint given (--pd)")]
    NoEndpoints,

    /// An endpoint that is not a URL or host:port this client can dial.
    #[error("bad PD endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Nothing answered at the endpoint (refused, unresolvable, TLS handshake failed, ...).
    #[error("PD at {endpoint} is unreachable: {detail}")]
    Unreachable {
        /// The URL dialled.
        endpoint: String,
        /// The transport error with its causes.
        detail: String,
    },

    /// The server answered, but has no PD service: it answered GetMembers with Unimplemented,
    /// as a plain etcd does. Server start uses this to tell an etcd from a PD.
    #[error("not a PD: {endpoint} answered GetMembers with Unimplemented (a plain etcd?)")]
    NotPd {
        /// The URL that answered.
        endpoint: String,
    },

    /// A response header named a different cluster than the one this client joined.
    #[error(
        "cluster id mismatch: {endpoint} answered {method} for cluster {got}, but this client \
         joined cluster {expected}; are the --pd endpoints from one cluster?"
    )]
    ClusterIdMismatch {
        /// The URL that answered.
        endpoint: String,
        /// The gRPC method.
        method: &'static str,
        /// The cluster id found at connect.
        expected: u64,
        /// The cluster id in the response header.
        got: u64,
    },

    /// PD answered with an error in its response header (`ResponseHeader.error`).
    #[error("PD at {endpoint} refused {method}: {kind}: {message}")]
    Server {
        /// The URL that answered.
        endpoint: String,
        /// The gRPC method.
        method: &'static str,
        /// The `pdpb.ErrorType` name, e.g. `NOT_BOOTSTRAPPED`.
        kind: String,
        /// PD's message.
        message: String,
    },

    /// The call failed with a gRPC status (PD's "not leader" is `Unavailable`).
    #[error("PD at {endpoint} failed {method}: {code:?}: {message}")]
    Rpc {
        /// The URL called.
        endpoint: String,
        /// The gRPC method.
        method: &'static str,
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },

    /// No answer within the call's timeout.
    #[error("PD at {endpoint} did not answer {method} within {after:?}")]
    Timeout {
        /// The URL called last.
        endpoint: String,
        /// The gRPC method.
        method: &'static str,
        /// The timeout that ran out.
        after: Duration,
    },

    /// The members answered, but none names a leader that can be reached.
    #[error("no PD leader reachable from {endpoints}: {detail}")]
    NoLeader {
        /// The URLs tried, comma-separated.
        endpoints: String,
        /// Why each failed.
        detail: String,
    },

    /// PD handed out a timestamp at or below one this client already returned (a leader with a
    /// stale TSO, or a PD whose clock went back). Never returned to a caller as a timestamp.
    #[error(
        "PD at {endpoint} returned TSO {got}, not above {last} already handed out; refusing to \
         go back in time"
    )]
    TsoWentBackwards {
        /// The URL that answered.
        endpoint: String,
        /// The first timestamp of the batch PD returned.
        got: u64,
        /// The largest timestamp returned so far.
        last: u64,
    },

    /// A response that breaks the protocol (a missing field, an impossible count).
    #[error("PD at {endpoint} sent a malformed {method} answer: {detail}")]
    Protocol {
        /// The URL that answered.
        endpoint: String,
        /// The gRPC method.
        method: &'static str,
        /// What is wrong.
        detail: String,
    },

    /// The client is shutting down (its last handle was dropped).
    #[error("the PD client is closed")]
    Closed,
}

impl PdError {
    /// Whether trying again (possibly at another member, after looking for the leader) can
    /// succeed. Header errors, cluster mismatches, NotPd and malformed answers do not change by
    /// retrying; timeouts are not retried either, since the caller's time is used up.
    pub fn is_retryable(&self) -> bool {
        match self {
            PdError::Unreachable { .. }
            | PdError::NoLeader { .. }
            | PdError::TsoWentBackwards { .. } => true,
            PdError::Rpc { code, message, .. } => is_leader_change(*code, message),
            _ => false,
        }
    }

    /// Whether the error suggests the leader moved or went away, so it is worth asking the
    /// members who leads now.
    pub(crate) fn suggests_leader_change(&self) -> bool {
        match self {
            PdError::Unreachable { .. }
            | PdError::NoLeader { .. }
            | PdError::Timeout { .. }
            | PdError::TsoWentBackwards { .. } => true,
            PdError::Rpc { code, message, .. } => is_leader_change(*code, message),
            _ => false,
        }
    }

    /// Maps a gRPC status from `endpoint`'s `method`.
    pub(crate) fn from_status(
        endpoint: &str,
        method: &'static str,
        status: &tonic::Status,
    ) -> Self {
        let endpoint = endpoint.to_string();
        if status.code() == Code::Unimplemented && method == "GetMembers" {
            return PdError::NotPd { endpoint };
        }
        // A transport failure comes back as a status carrying its cause; name the whole chain
        // (connection refused, certificate unknown, ...), which is what the user can act on.
        // (A connection that closes before the answer is hyper's "canceled", not ours.)
        if let Some(source) = std::error::Error::source(status) {
            if matches!(
                status.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled
            ) {
                return PdError::Unreachable {
                    endpoint,
                    detail: error_chain(source),
                };
            }
        }
        PdError::Rpc {
            endpoint,
            method,
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// PD answers a follower's calls with `Unavailable` "not leader" (v5.1 `grpc_service.go`); the
/// Go client also matches the message, whatever the code.
fn is_leader_change(code: Code, message: &str) -> bool {
    code == Code::Unavailable || message.contains("not leader")
}

/// An error and its causes, "a: b: c", skipping causes already in their parent's text.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = e.source();
    }
    text
}
