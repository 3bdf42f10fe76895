//! `cdc cli capture drain`: asks the owner to move a capture's tables away, through the API's
//! `PUT /api/v1/captures/drain`, and repeats the request until the capture holds nothing (the
//! API's protocol: each call reports how many tables are left, and re-asserts the drain after
//! an owner change).

use std::time::Duration;

use anyhow::{anyhow, bail};
use rcdc::meta::Meta;
use serde_json::json;

use super::cli::{call_api, capture_address, Api};

/// How often the drain is asked again while tables are left.
const POLL: Duration = Duration::from_secs(1);

/// Drains `capture`; with `wait`, until it holds no table or `timeout` passed.
pub async fn drain(
    meta: &Meta,
    api: Api<'_>,
    capture: &str,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        // Asked of the owner each time: it may change during a long drain.
        let address = capture_address(meta, api.server).await?;
        let answer = call_api(
            api.security,
            &address,
            reqwest::Method::PUT,
            "/api/v1/captures/drain",
            Some(json!({ "capture_id": capture })),
        )
        .await?;
        let left = answer["current_table_count"]
            .as_u64()
            .ok_or_else(|| anyhow!("unexpected answer from {address}: {answer}"))?;
        if !wait {
            outln!("{}", json!({ "current_table_count": left }))?;
            return Ok(());
        }
        if left == 0 {
            outln!("Capture {capture} is drained: it holds no tables.")?;
            return Ok(());
        }
        if last != Some(left) {
            outln!("Draining capture {capture}: {left} tables left")?;
            last = Some(left);
        }
        if tokio::time::Instant::now() + POLL > deadline {
            bail!("capture {capture} still holds {left} tables after {timeout:?}; the drain goes on, run the command again to follow it");
        }
        tokio::time::sleep(POLL).await;
    }
}
