//! What every call shares: the request header, the response-header checks, and retrying
//! within the call's timeout.

use std::future::Future;
use std::time::Duration;

use backon::Retryable;
use parking_lot::Mutex;
use rcdc_proto::pdpb;
use tokio::time::Instant;

use crate::backoff::call_backoff;
use crate::error::PdError;

/// The header every request carries: PD refuses a wrong cluster id.
pub(crate) fn request_header(cluster_id: u64) -> Option<pdpb::RequestHeader> {
    Some(pdpb::RequestHeader {
        cluster_id,
        sender_id: 0,
    })
}

/// A PD response, which carries a `ResponseHeader`.
pub(crate) trait Answer {
    fn header(&self) -> Option<&pdpb::ResponseHeader>;
}

macro_rules! answers {
    ($($t:ty),* $(,)?) => {
        $(impl Answer for $t {
            fn header(&self) -> Option<&pdpb::ResponseHeader> {
                self.header.as_ref()
            }
        })*
    };
}

answers!(
    pdpb::GetMembersResponse,
    pdpb::TsoResponse,
    pdpb::GetStoreResponse,
    pdpb::GetAllStoresResponse,
    pdpb::GetRegionResponse,
    pdpb::ScanRegionsResponse,
    pdpb::GetGcSafePointResponse,
    pdpb::UpdateServiceGcSafePointResponse,
);

/// Checks `answer`'s header: the cluster id must be `expected`, and an error in the header
/// becomes [`PdError::Server`].
pub(crate) fn check_answer<A: Answer>(
    endpoint: &str,
    method: &'static str,
    expected: u64,
    answer: A,
) -> Result<A, PdError> {
    let Some(header) = answer.header() else {
        return Err(PdError::Protocol {
            endpoint: endpoint.to_string(),
            method,
            detail: "no response header".into(),
        });
    };
    if header.cluster_id != expected {
        return Err(PdError::ClusterIdMismatch {
            endpoint: endpoint.to_string(),
            method,
            expected,
            got: header.cluster_id,
        });
    }
    if let Some(error) = &header.error {
        let kind = pdpb::ErrorType::try_from(error.r#type);
        if kind != Ok(pdpb::ErrorType::Ok) {
            return Err(PdError::Server {
                endpoint: endpoint.to_string(),
                method,
                kind: kind.map_or_else(
                    |_| format!("error type {}", error.r#type),
                    |k| k.as_str_name().to_string(),
                ),
                message: error.message.clone(),
            });
        }
    }
    Ok(answer)
}

/// Runs `attempt` until it succeeds, fails for good, or `deadline` passes; retryable errors
/// are retried after [`call_backoff`] delays. When the time runs out, the last error seen
/// explains it better than the timeout does (a leader that stayed unreachable), so it is
/// returned; `on_timeout` builds the error when there was none, and is the place to start a
/// member check.
pub(crate) async fn retry_until<T, F, Fut>(
    deadline: Instant,
    attempt: F,
    on_timeout: impl FnOnce() -> PdError,
) -> Result<T, PdError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PdError>>,
{
    let last = Mutex::new(None::<PdError>);
    let retried = attempt
        .retry(call_backoff())
        .when(PdError::is_retryable)
        .notify(|e: &PdError, delay: Duration| {
            tracing::debug!(error = %e, ?delay, "PD call retried");
            *last.lock() = Some(e.clone());
        });
    match tokio::time::timeout_at(deadline, retried).await {
        Ok(result) => result,
        Err(_) => {
            let timed_out = on_timeout();
            Err(last.lock().take().unwrap_or(timed_out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(cluster_id: u64, error: Option<pdpb::Error>) -> pdpb::GetGcSafePointResponse {
        pdpb::GetGcSafePointResponse {
            header: Some(pdpb::ResponseHeader { cluster_id, error }),
            safe_point: 5,
        }
    }

    #[test]
    fn header_checks() {
        let ep = "http://127.0.0.1:1";
        assert!(check_answer(ep, "GetGCSafePoint", 7, answer(7, None)).is_ok());
        // An explicit OK error is no error.
        let ok = pdpb::Error {
            r#type: pdpb::ErrorType::Ok as i32,
            message: String::new(),
        };
        assert!(check_answer(ep, "GetGCSafePoint", 7, answer(7, Some(ok))).is_ok());
        let e = check_answer(ep, "GetGCSafePoint", 7, answer(8, None)).expect_err("mismatch");
        let text = e.to_string();
        assert!(matches!(
            e,
            PdError::ClusterIdMismatch {
                expected: 7,
                got: 8,
                ..
            }
        ));
        assert!(
            text.contains(ep) && text.contains('7') && text.contains('8'),
            "{text}"
        );
        let unknown = pdpb::Error {
            r#type: 99,
            message: "new kind".into(),
        };
        let e = check_answer(ep, "GetGCSafePoint", 7, answer(7, Some(unknown))).expect_err("err");
        assert_eq!(
            e.to_string(),
            "PD at http://127.0.0.1:1 refused GetGCSafePoint: error type 99: new kind"
        );
        let headless = pdpb::GetGcSafePointResponse::default();
        assert!(matches!(
            check_answer(ep, "GetGCSafePoint", 7, headless),
            Err(PdError::Protocol { .. })
        ));
    }
}
