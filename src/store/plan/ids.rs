//! Row ids and timestamps, as every table writes them.

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A new row id.
pub(crate) fn new_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    // Time-ordered ids (UUIDv7): new rows land at the end of the primary-key index, not all
    // over it. The 80 bits after the timestamp are a random per-process start plus a counter:
    // unique within the process by construction, across processes by the random start, and
    // one system call per process instead of one per row.
    static START: OnceLock<u128> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| uuid::Uuid::new_v4().as_u128());
    let tail = start.wrapping_add(u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)));
    let bytes: [u8; 10] = tail.to_be_bytes()[6..].try_into().expect("10 of 16 bytes");
    uuid::Builder::from_unix_timestamp_millis(now_millis() as u64, &bytes)
        .into_uuid()
        .to_string()
}
