//! "Sessions changed" announcements on `<stream>:updates` (Redis pub/sub): ingest, the recording
//! pipeline and erasure announce the sessions they changed after their commit; every replica's web
//! layer follows the channel and drops those sessions from its caches. Best effort: a replica that
//! misses a message is not subscribed at that moment and does not cache.

use uuid::Uuid;

/// The channel of `stream`'s announcements.
pub fn channel(stream: &str) -> String {
    format!("{stream}:updates")
}

/// One message: the sessions' ids (simple form), comma-separated.
pub fn encode(ids: &[Uuid]) -> String {
    ids.iter()
        .map(|id| id.simple().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The session ids of a message (anything that is not an id is skipped).
pub fn decode(message: &str) -> Vec<Uuid> {
    message
        .split(',')
        .filter_map(|id| Uuid::try_parse(id.trim()).ok())
        .collect()
}

/// Publishes `ids` on `channel`; a failure is logged (at debug: the commit stands, caches expire).
pub async fn announce(conn: &mut impl redis::aio::ConnectionLike, channel: &str, ids: &[Uuid]) {
    if ids.is_empty() {
        return;
    }
    let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(encode(ids))
        .query_async(conn)
        .await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "cannot announce changed sessions to the other replicas");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_round_trip_and_skip_what_is_not_an_id() {
        let ids = vec![uuid::Uuid::now_v7(), uuid::Uuid::now_v7()];
        assert_eq!(super::decode(&super::encode(&ids)), ids);
        assert_eq!(
            super::decode(&format!("x, {}", ids[0].simple())),
            vec![ids[0]]
        );
        assert!(super::decode("").is_empty());
    }
}
