//! The total-queue checker the fault, partition and cluster tests share: what was published
//! (call id → its newest snapshot), publishing it, and the check that every published report is
//! stored exactly as its newest snapshot, nothing lost, duplicated or unexpected, nothing pending,
//! nothing dead-lettered, no row pointing at a missing audio object. Also the process helpers
//! (replicas, freezing one while it holds entries).

use super::{ServiceProcess, TestEnv};
use std::collections::BTreeMap;
use std::time::Duration;

/// What was published: call id → (newest seq, turns of that snapshot).
pub type Published = BTreeMap<String, (i64, usize)>;

/// Publishes `calls` calls as `seqs` snapshots each (seq s has s + 2 turns; the last is final),
/// interleaved like concurrent calls, recording what each call's newest snapshot is.
pub async fn publish(env: &TestEnv, prefix: &str, calls: usize, seqs: i64, out: &mut Published) {
    for seq in 0..seqs {
        for c in 0..calls {
            let id = format!("{prefix}-{c}");
            let turns = seq as usize + 2;
            let r = super::report(&id, seq, seq == seqs - 1, turns);
            env.publish_json(&r).await;
            let e = out.entry(id).or_insert((seq, turns));
            if seq >= e.0 {
                *e = (seq, turns);
            }
        }
    }
}

/// The total-queue checker.
pub async fn check_total_queue(env: &TestEnv, published: &Published) {
    let stored = env
        .rows("SELECT call_id, report_seq, (SELECT COUNT(*) FROM conversation_turns t WHERE t.session_id = s.id) AS turns FROM call_sessions s")
        .await;
    let mut got: Published = BTreeMap::new();
    for r in &stored {
        let id = r["call_id"].as_str().unwrap().to_string();
        let seq = r["report_seq"].as_i64().unwrap();
        let turns = r["turns"].as_i64().unwrap() as usize;
        assert!(
            got.insert(id.clone(), (seq, turns)).is_none(),
            "call {id} stored twice"
        );
    }
    let lost: Vec<&String> = published.keys().filter(|k| !got.contains_key(*k)).collect();
    let unexpected: Vec<&String> = got.keys().filter(|k| !published.contains_key(*k)).collect();
    assert!(lost.is_empty(), "calls lost: {lost:?}");
    assert!(
        unexpected.is_empty(),
        "calls nobody published: {unexpected:?}"
    );
    for (id, want) in published {
        assert_eq!(
            got.get(id),
            Some(want),
            "{id}: stored (seq, turns) is not its newest snapshot"
        );
    }
    assert_eq!(env.unfinished().await, 0, "entries left unread or pending");
    assert!(
        env.dlq_entries().await.is_empty(),
        "nothing was dead-lettered"
    );
    for g in env
        .rows("SELECT s3_key FROM audio_segments WHERE s3_key IS NOT NULL")
        .await
    {
        let k = g["s3_key"].as_str().unwrap();
        assert!(
            env.app.store.get(None, k).await.unwrap().is_some(),
            "a row points at the missing object {k}"
        );
    }
}

pub const FAST: [(&str, &str); 5] = [
    ("INSIGHTS_CLAIM_IDLE_MS", "3000"),
    // Below the claim idle time, as docs/configuration.md asks: a frozen replica's locks go first.
    ("INSIGHTS_DB_IDLE_TRANSACTION_TIMEOUT_MS", "2000"),
    ("INSIGHTS_CLAIM_INTERVAL_MS", "500"),
    ("INSIGHTS_DB_MAX_CONNECTIONS", "4"),
    ("RUST_LOG", "info"),
];

pub fn svc_alive(svc: &ServiceProcess) -> bool {
    std::fs::metadata(format!("/proc/{}", svc.child.id())).is_ok()
        && !std::fs::read_to_string(format!("/proc/{}/stat", svc.child.id()))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Two replicas on one stream (their own consumer names), as a deployment runs them.
pub fn replica(env: &TestEnv, name: &str) -> ServiceProcess {
    let mut extra: Vec<(&str, &str)> = FAST.to_vec();
    extra.push(("INSIGHTS_CONSUMER_NAME", name));
    env.start_service(&extra)
}

/// Entries delivered to `consumer` and not acknowledged.
pub async fn pending_of(env: &TestEnv, consumer: &str) -> usize {
    let mut conn = env.broker_conn().await;
    let mut held = 0;
    for stream in env.app.config.partitions().streams() {
        let v: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(stream)
            .arg(&env.app.config.consumer_group)
            .arg("-")
            .arg("+")
            .arg(10_000)
            .arg(consumer)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        held += v.len();
    }
    held
}

/// Freezes `svc` (SIGSTOP) at a moment it holds delivered, unacknowledged entries, so what follows
/// really tests their claim; thaws and retries until it catches such a moment. When the service
/// drained the backlog before a moment was caught (a fast day), more calls are published (and
/// recorded in `published`) so there is something to hold.
pub async fn freeze_holding_entries(
    env: &TestEnv,
    svc: &ServiceProcess,
    name: &str,
    published: &mut Published,
) -> usize {
    let mut top_ups = 0;
    for _ in 0..400 {
        svc.signal("STOP");
        let held = pending_of(env, name).await;
        if held > 0 {
            return held;
        }
        svc.signal("CONT");
        if env.unfinished().await == 0 && top_ups < 10 {
            top_ups += 1;
            publish(env, &format!("{name}-top-up-{top_ups}"), 80, 3, published).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} never held pending entries: the test would prove nothing");
}

/// Publishes as [`publish`] does, each user turn with its STT input audio (an 0.8 s tone) in an
/// `audio:<segment_id>` field, as Atlas sends it.
pub async fn publish_with_audio(
    env: &TestEnv,
    prefix: &str,
    calls: usize,
    seqs: i64,
    out: &mut Published,
) {
    let wav = super::tone_wav(800, 0.3);
    for seq in 0..seqs {
        for c in 0..calls {
            let id = format!("{prefix}-{c}");
            let turns = seq as usize + 2;
            let mut r = super::report(&id, seq, seq == seqs - 1, turns);
            let users: Vec<usize> = (0..turns).filter(|i| i % 2 == 0).collect();
            r["audio_segments"] = serde_json::Value::Array(
                users
                    .iter()
                    .map(|i| {
                        serde_json::json!({"segment_id": format!("stt_input-{i}"), "segment_type": "stt_input",
                            "turn_index": i, "offset_ms": i * 1000, "audio": {"field": format!("audio:stt_input-{i}")}})
                    })
                    .collect(),
            );
            let payload = serde_json::to_vec(&r).unwrap();
            let names: Vec<String> = users
                .iter()
                .map(|i| format!("audio:stt_input-{i}"))
                .collect();
            let mut fields: Vec<(&str, &[u8])> = vec![("payload", payload.as_slice())];
            for n in &names {
                fields.push((n.as_str(), wav.as_slice()));
            }
            env.publish_fields(&fields).await;
            let e = out.entry(id).or_insert((seq, turns));
            if seq >= e.0 {
                *e = (seq, turns);
            }
        }
    }
}

/// Entries the group has acknowledged so far (entries-read − pending, summed over partitions).
pub async fn acknowledged(env: &TestEnv) -> i64 {
    let mut conn = env.broker_conn().await;
    let mut total = 0;
    for stream in env.app.config.partitions().streams() {
        let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for g in groups {
            let name: String = g
                .get("name")
                .and_then(|v| redis::from_redis_value_ref(v).ok())
                .unwrap_or_default();
            if name != env.app.config.consumer_group {
                continue;
            }
            let int = |k: &str| -> i64 {
                g.get(k)
                    .and_then(|v| redis::from_redis_value_ref(v).ok())
                    .unwrap_or(0)
            };
            total += int("entries-read") - int("pending");
        }
    }
    total
}

/// True once the service logged a line containing every one of `needles`.
pub fn logged(svc: &ServiceProcess, needles: &[&str]) -> bool {
    svc.log
        .lock()
        .unwrap()
        .iter()
        .any(|l| needles.iter().all(|n| l.contains(n)))
}

/// Publishes as [`publish`] (or [`publish_with_audio`]) does, then waits until some of it is stored:
/// the moment "mid-ingest" of the fault tests.
pub async fn under_way(
    env: &TestEnv,
    prefix: &str,
    calls: usize,
    seqs: i64,
    audio: bool,
    out: &mut Published,
) {
    if audio {
        publish_with_audio(env, prefix, calls, seqs, out).await;
    } else {
        publish(env, prefix, calls, seqs, out).await;
    }
    super::eventually(30, "ingest under way", || async {
        env.count("call_sessions").await > 0
    })
    .await;
}

/// The stall of an outage the service must ride out: waits (up to 30 s) until it logged that ingest
/// paused on `component`, then holds for `hold` and checks that nothing was acknowledged meanwhile.
pub async fn stalls_without_acknowledging(
    env: &TestEnv,
    svc: &ServiceProcess,
    component: &str,
    hold: Duration,
) {
    super::eventually(30, &format!("ingest paused on the {component}"), || async {
        logged(svc, &["ingest paused", component])
    })
    .await;
    let acked = acknowledged(env).await;
    tokio::time::sleep(hold).await;
    assert_eq!(
        acknowledged(env).await,
        acked,
        "nothing acknowledged while the {component} is unreachable"
    );
    assert!(svc_alive(svc));
}

/// Waits (up to 120 s) until every partition is read and acknowledged, after a heal.
pub async fn drained(env: &TestEnv) {
    super::eventually(120, "drained after the heal", || async {
        env.unfinished().await == 0
    })
    .await;
}
