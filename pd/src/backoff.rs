//! Backoff schedules for `backon`: TiCDC's connect backoff and the quicker one between retries
//! of a call that met a leader change.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// gRPC's connect backoff as TiCDC configures it (`cdc/server.go`; facts §4.1): base 1 s,
/// ×1.1 per attempt, at most 3 s, each delay jittered by ±10 %; `retries` delays in all.
pub(crate) fn connect_backoff(retries: usize) -> impl backon::Backoff {
    let schedule = ExponentialBuilder::new()
        .with_min_delay(Duration::from_secs(1))
        .with_factor(1.1)
        .with_max_delay(Duration::from_secs(3))
        .with_max_times(retries);
    jittered(schedule, 0.1)
}

/// Between retries of one call after "not leader" or an unreachable leader: the member lookup
/// has usually found the new leader by then, so start at 50 ms and stay under 1 s. The call's
/// timeout bounds the number of retries.
pub(crate) fn call_backoff() -> impl backon::Backoff {
    let schedule = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_factor(2.0)
        .with_max_delay(Duration::from_secs(1))
        .without_max_times();
    jittered(schedule, 0.1)
}

/// Spreads every delay of `schedule` uniformly over ±`fraction` of itself, as gRPC's backoff
/// does (backon's own jitter only adds, up to +100 %). The jitter only decorrelates clients
/// that retry together; no decision that a recording replays depends on it.
fn jittered(schedule: ExponentialBuilder, fraction: f64) -> impl backon::Backoff {
    let mut rng = fastrand::Rng::new();
    schedule
        .build()
        .map(move |delay| delay.mul_f64(1.0 + fraction * (2.0 * rng.f64() - 1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_backoff_is_ticdcs() {
        let delays: Vec<Duration> = connect_backoff(20).collect();
        assert_eq!(delays.len(), 20);
        // Nominal delays 1 s, 1.1 s, 1.21 s, ... capped at 3 s, each within ±10 %.
        let mut nominal = 1.0_f64;
        for (i, d) in delays.iter().enumerate() {
            let s = d.as_secs_f64();
            assert!(
                s >= nominal * 0.9 - 1e-3 && s <= nominal * 1.1 + 1e-3,
                "delay {i}: {s} s, nominal {nominal} s"
            );
            nominal = (nominal * 1.1).min(3.0);
        }
        // By the 12th delay the nominal value has reached its 3 s cap.
        assert!(delays[19].as_secs_f64() <= 3.3 + 1e-3);
        assert!(delays[19].as_secs_f64() >= 2.7 - 1e-3);
    }

    #[test]
    fn no_retries_means_no_delay() {
        assert_eq!(connect_backoff(0).count(), 0);
    }

    #[test]
    fn call_backoff_starts_small_and_stays_under_a_second() {
        let delays: Vec<Duration> = call_backoff().take(10).collect();
        assert!(delays[0] <= Duration::from_millis(55));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(1100)));
    }
}
