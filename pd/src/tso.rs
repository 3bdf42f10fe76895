//! The TSO dispatcher: one bidi `Tso` stream to the leader; the callers waiting at the same
//! time share one request (`count` = how many), as the Go client's `tsLoop` does.
//!
//! PD answers with the LAST timestamp of the batch; the first is `logical - count + 1` in the
//! same millisecond, and `ts = physical_ms << 18 | logical`. Timestamps never go back: a batch
//! that does not start above the largest timestamp handed out is refused (the stream is
//! dropped, the leader re-checked, the request retried) and never returned.

use std::sync::Arc;

use parking_lot::Mutex;
use rcdc_proto::pdpb;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::call::{check_answer, request_header, retry_until};
use crate::error::PdError;
use crate::members::{Leader, Members};

/// Bits of the logical part of a timestamp.
pub const LOGICAL_BITS: u32 = 18;

/// Composes a timestamp from PD's parts, if they are in range (physical ms below 2^46,
/// logical below 2^18).
pub fn compose_ts(physical: i64, logical: i64) -> Option<u64> {
    let physical = u64::try_from(physical).ok()?;
    let logical = u64::try_from(logical).ok()?;
    if physical >> (64 - LOGICAL_BITS) != 0 || logical >> LOGICAL_BITS != 0 {
        return None;
    }
    Some(physical << LOGICAL_BITS | logical)
}

/// The physical part (ms since the Unix epoch) of a timestamp.
pub fn physical_ms(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// A caller waiting for one timestamp, until its deadline.
pub(crate) struct Waiter {
    pub reply: oneshot::Sender<Result<u64, PdError>>,
    pub deadline: Instant,
}

/// An open `Tso` stream.
struct Stream {
    url: String,
    generation: u64,
    requests: mpsc::Sender<pdpb::TsoRequest>,
    answers: Streaming<pdpb::TsoResponse>,
    /// A request was sent and its answer not read (the attempt was cancelled by a timeout):
    /// the next answer would be that one, so the stream cannot be used again.
    in_flight: bool,
}

/// The dispatcher's state, shared by the attempts of one batch.
struct Fetcher {
    members: Arc<Members>,
    poke: Arc<Notify>,
    stream: tokio::sync::Mutex<Option<Stream>>,
    /// The largest timestamp handed out.
    last: Mutex<u64>,
}

/// Serves `waiters` until every sender is dropped: takes what is queued (at most `max_batch`),
/// asks PD for that many timestamps, and answers each waiter in arrival order.
pub(crate) async fn dispatch(
    members: Arc<Members>,
    poke: Arc<Notify>,
    mut waiters: mpsc::Receiver<Waiter>,
    max_batch: u32,
) {
    let fetcher = Fetcher {
        members,
        poke,
        stream: tokio::sync::Mutex::new(None),
        last: Mutex::new(0),
    };
    let max_batch = usize::try_from(max_batch.max(1)).unwrap_or(usize::MAX);
    while let Some(first) = waiters.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match waiters.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        // Callers that gave up (their timeout) need no timestamp.
        batch.retain(|w| !w.reply.is_closed());
        let Ok(count) = u32::try_from(batch.len()) else {
            continue; // unreachable: max_batch is a u32
        };
        if count == 0 {
            continue;
        }
        // The batch is done when its most impatient caller gives up.
        let deadline = batch.iter().map(|w| w.deadline).min();
        let result = match deadline {
            Some(deadline) => fetcher.fetch(count, deadline).await,
            None => continue,
        };
        match result {
            Ok(first_ts) => {
                for (i, waiter) in (0u64..).zip(batch) {
                    let _ = waiter.reply.send(Ok(first_ts + i));
                }
            }
            Err(e) => {
                for waiter in batch {
                    let _ = waiter.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

impl Fetcher {
    /// `count` new timestamps, retried (new stream, leader re-checked) until `deadline`;
    /// returns the first.
    async fn fetch(&self, count: u32, deadline: Instant) -> Result<u64, PdError> {
        let timeout = self.members.request_timeout();
        let on_timeout = || {
            self.poke.notify_one();
            PdError::Timeout {
                endpoint: self.members.leader().map_or_else(|_| "?".into(), |l| l.url),
                method: "Tso",
                after: timeout,
            }
        };
        retry_until(deadline, || self.fetch_once(count), on_timeout).await
    }

    async fn fetch_once(&self, count: u32) -> Result<u64, PdError> {
        let mut slot = self.stream.lock().await;
        if slot.as_ref().is_some_and(|s| s.in_flight) {
            *slot = None;
        }
        let cluster_id = self.members.cluster_id();
        let (url, generation, result) = match slot.as_mut() {
            Some(stream) => (
                stream.url.clone(),
                stream.generation,
                stream.round_trip(count, cluster_id).await,
            ),
            None => {
                let leader = self.members.leader()?;
                let result = match self.open(&leader, count).await {
                    Ok((stream, answer)) => {
                        *slot = Some(stream);
                        Ok(answer)
                    }
                    Err(e) => Err(e),
                };
                (leader.url, leader.generation, result)
            }
        };
        let first = result.and_then(|answer| self.accept(&url, count, answer));
        if let Err(e) = &first {
            // Any failure ends the stream: the next attempt opens one to the (re-checked) leader.
            *slot = None;
            drop(slot);
            if e.suggests_leader_change() {
                self.members.refresh(generation).await;
            }
        }
        first
    }

    /// Opens a stream to the leader with the first request already queued: PD (grpc-go) sends
    /// the response headers with its first answer, so the request must go out before the
    /// headers are awaited.
    async fn open(
        &self,
        leader: &Leader,
        count: u32,
    ) -> Result<(Stream, pdpb::TsoResponse), PdError> {
        let (requests, rx) = mpsc::channel(4);
        let cluster_id = self.members.cluster_id();
        requests
            .send(tso_request(cluster_id, count))
            .await
            .map_err(|_| PdError::Closed)?;
        let mut rpc = Members::rpc(leader.channel.clone());
        let answers = rpc
            .tso(ReceiverStream::new(rx))
            .await
            .map_err(|s| PdError::from_status(&leader.url, "Tso", &s))?
            .into_inner();
        let mut stream = Stream {
            url: leader.url.clone(),
            generation: leader.generation,
            requests,
            answers,
            in_flight: true,
        };
        let answer = stream.receive(cluster_id).await?;
        Ok((stream, answer))
    }

    /// Checks a batch answer and the monotonic rule; returns the batch's first timestamp.
    fn accept(&self, url: &str, count: u32, answer: pdpb::TsoResponse) -> Result<u64, PdError> {
        let malformed = |detail: String| PdError::Protocol {
            endpoint: url.to_string(),
            method: "Tso",
            detail,
        };
        if answer.count != count {
            return Err(malformed(format!(
                "asked for {count} timestamps, got {}",
                answer.count
            )));
        }
        let Some(ts) = answer.timestamp else {
            return Err(malformed("no timestamp".into()));
        };
        let first_logical = ts.logical - i64::from(count) + 1;
        let (Some(first), Some(last)) = (
            compose_ts(ts.physical, first_logical),
            compose_ts(ts.physical, ts.logical),
        ) else {
            return Err(malformed(format!(
                "timestamp out of range: physical {}, logical {}, count {count}",
                ts.physical, ts.logical
            )));
        };
        let mut handed_out = self.last.lock();
        if first <= *handed_out {
            return Err(PdError::TsoWentBackwards {
                endpoint: url.to_string(),
                got: first,
                last: *handed_out,
            });
        }
        *handed_out = last;
        Ok(first)
    }
}

fn tso_request(cluster_id: u64, count: u32) -> pdpb::TsoRequest {
    pdpb::TsoRequest {
        header: request_header(cluster_id),
        count,
        dc_location: String::new(),
    }
}

impl Stream {
    async fn round_trip(
        &mut self,
        count: u32,
        cluster_id: u64,
    ) -> Result<pdpb::TsoResponse, PdError> {
        self.in_flight = true;
        self.requests
            .send(tso_request(cluster_id, count))
            .await
            .map_err(|_| PdError::Unreachable {
                endpoint: self.url.clone(),
                detail: "the TSO stream is closed".into(),
            })?;
        self.receive(cluster_id).await
    }

    async fn receive(&mut self, cluster_id: u64) -> Result<pdpb::TsoResponse, PdError> {
        let answer = match self.answers.message().await {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                return Err(PdError::Unreachable {
                    endpoint: self.url.clone(),
                    detail: "PD ended the TSO stream".into(),
                })
            }
            Err(status) => return Err(PdError::from_status(&self.url, "Tso", &status)),
        };
        self.in_flight = false;
        check_answer(&self.url, "Tso", cluster_id, answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_is_physical_shifted_by_18_or_logical() {
        assert_eq!(compose_ts(1, 0), Some(1 << 18));
        assert_eq!(
            compose_ts(1_600_000_000_000, 5),
            Some((1_600_000_000_000 << 18) | 5)
        );
        assert_eq!(
            physical_ms((1_600_000_000_000 << 18) | 5),
            1_600_000_000_000
        );
        assert_eq!(compose_ts(0, (1 << 18) - 1), Some((1 << 18) - 1));
    }

    #[test]
    fn out_of_range_parts_are_refused() {
        assert_eq!(compose_ts(-1, 0), None);
        assert_eq!(compose_ts(0, -1), None);
        assert_eq!(compose_ts(0, 1 << 18), None);
        assert_eq!(compose_ts(1 << 46, 0), None);
    }
}
