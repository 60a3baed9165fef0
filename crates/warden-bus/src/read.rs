use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Bus, BusError, Consumer, Message};

/// Read `topic` from the beginning up to the end offsets it had when called, handing every
/// message to `apply`; returns the reader, positioned to follow new records.
///
/// Fails with [`BusError::Timeout`] when the end is not reached within `timeout`.
pub async fn read_to_end(
    bus: &dyn Bus,
    topic: &str,
    timeout: Duration,
    mut apply: impl FnMut(&Message),
) -> Result<Box<dyn Consumer>, BusError> {
    let deadline = Instant::now() + timeout;
    let ends = bus.end_offsets(topic).await?;
    let mut reader = bus.reader(topic).await?;
    let mut pending: BTreeMap<i32, i64> = ends.into_iter().filter(|(_, end)| *end > 0).collect();
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BusError::Timeout(format!(
                "reading `{topic}` to its end: partitions {:?} not reached",
                pending.keys().collect::<Vec<_>>()
            )));
        }
        for msg in reader
            .poll(1024, left.min(Duration::from_millis(200)))
            .await?
        {
            apply(&msg);
            if let Some(end) = pending.get(&msg.partition)
                && msg.offset + 1 >= *end
            {
                pending.remove(&msg.partition);
            }
        }
    }
    Ok(reader)
}
