//! The ingest service end to end against real Redis, PostgreSQL/SQLite and Garage/filesystem.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[macro_use]
mod common;

use base64::Engine;
use common::{Db, Store, contract_dir, report, spawn, spawn_with, tone_wav};
use serde_json::json;

on_both_stacks!(
    every_valid_contract_example_ingests,
    every_invalid_example_reaches_the_dlq_with_a_reason_while_valid_neighbours_ingest,
    the_same_report_published_twice_leaves_the_same_rows_as_once,
    an_entry_redelivered_after_its_commit_changes_nothing,
    a_final_report_before_its_partial_keeps_the_final,
    newer_reports_replace_older_turns_and_keep_rows_they_do_not_mention,
    reports_of_one_call_in_one_batch_merge_as_if_sequential,
    entries_left_pending_by_a_dead_consumer_are_reclaimed_and_stored,
    gzip_payloads_ingest,
    audio_in_all_three_forms_is_stored_and_measured,
    a_truncated_wav_is_recorded_as_an_error_and_the_rest_of_the_report_is_stored,
    an_entry_that_keeps_failing_goes_to_the_dlq_after_the_delivery_limit,
    nul_characters_in_text_are_stored,
    a_call_written_by_another_replica_in_between_is_applied_in_full,
    a_backlog_written_in_lanes_stores_and_announces_what_one_transaction_does,
    a_batch_read_ahead_while_one_commits_is_written_before_shutdown,
);

async fn every_valid_contract_example_ingests(db: Db, store: Store) {
    let env = spawn(db, store).await;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(contract_dir().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            env.publish(&std::fs::read(&path).unwrap()).await;
            names.push(path);
        }
    }
    assert!(names.len() >= 4, "examples found: {names:?}");
    let mut consumer = env.consumer();
    let r = env.drain(&mut consumer).await;
    assert_eq!(r.dead_lettered, 0, "{r:?} {:?}", env.dlq_entries().await);
    assert_eq!(r.read, names.len());
    assert_eq!(env.pending_count().await, 0);

    let basic = env
        .session("call-0900001-0e4018bf")
        .await
        .expect("final-basic stored");
    assert_eq!(
        (basic.report_seq, basic.is_final),
        (1, true),
        "the final (seq 1) wins over partial-seq0"
    );
    assert_eq!((basic.total_user_turns, basic.total_agent_turns), (4, 4));
    let avg = basic.avg_e2e_latency_ms.unwrap();
    assert!(
        (avg - (959.2 + 764.1 + 1054.8 + 847.7) / 4.0).abs() < 1e-6,
        "{avg}"
    );
    assert_eq!(basic.stt_provider.as_deref(), Some("deepgram"));
    assert_eq!(basic.vad_threshold, Some(0.5));
    assert_eq!(basic.close_reason.as_deref(), Some("user_hangup"));
    assert!((basic.duration_seconds.unwrap() - 29.132).abs() < 1e-9);

    let minimal = env.session("call-minimal-1").await.expect("minimal stored");
    assert_eq!(
        (minimal.total_user_turns, minimal.avg_e2e_latency_ms),
        (0, None)
    );

    let inline = env.segments("call-0900002-134f069b").await;
    assert_eq!(inline.len(), 2, "{inline:#?}");
    assert!(
        inline.iter().all(|s| s.status.as_str() == "stored"),
        "{inline:#?}"
    );
    let seg = &inline[0];
    assert_eq!(
        (
            seg.status.as_str(),
            seg.source.as_str(),
            seg.sample_rate,
            seg.channels
        ),
        ("stored", "b64", Some(16000), Some(1))
    );
    assert!(
        (seg.decoded_duration_ms.unwrap() - 3046.0).abs() < 1.0,
        "{seg:?}"
    );
    assert!(seg.rms_mean.unwrap() > 0.0 && seg.snr_estimate.is_some());
    let key = seg.s3_key.clone().unwrap();
    let bytes = env
        .app
        .store
        .get(None, &key)
        .await
        .unwrap()
        .expect("audio object exists");
    assert_eq!(&bytes[..4], b"RIFF");
    env.cleanup().await;
}

async fn every_invalid_example_reaches_the_dlq_with_a_reason_while_valid_neighbours_ingest(
    db: Db,
    store: Store,
) {
    let env = spawn(db, store).await;
    let valid = std::fs::read(contract_dir().join("examples/minimal.json")).unwrap();
    let mut expected = Vec::new();
    env.publish(&valid).await;
    for entry in std::fs::read_dir(contract_dir().join("examples/invalid")).unwrap() {
        let path = entry.unwrap().path();
        let id = env.publish(&std::fs::read(&path).unwrap()).await;
        expected.push((id, path));
        env.publish(
            &serde_json::to_vec(&report(
                &format!("neighbour-{}", expected.len()),
                0,
                true,
                2,
            ))
            .unwrap(),
        )
        .await;
    }
    env.publish_fields(&[("not_payload", b"x")]).await;
    let mut consumer = env.consumer();
    let r = env.drain(&mut consumer).await;
    assert_eq!(r.dead_lettered, expected.len() + 1, "{r:?}");
    assert_eq!(r.stored, expected.len() + 1);
    assert_eq!(
        env.pending_count().await,
        0,
        "dead-lettered entries are acknowledged"
    );
    assert!(env.session("call-minimal-1").await.is_some());
    for i in 1..=expected.len() {
        assert!(env.session(&format!("neighbour-{i}")).await.is_some());
    }
    let dlq = env.dlq_entries().await;
    assert_eq!(dlq.len(), expected.len() + 1);
    for (id, path) in &expected {
        let e = dlq
            .iter()
            .find(|e| e.get("dlq_original_id") == Some(id))
            .unwrap_or_else(|| panic!("{path:?} not in the DLQ"));
        let reason = &e["dlq_reason"];
        let original = std::fs::read_to_string(path).unwrap();
        assert_eq!(e["payload"], original, "original fields are kept");
        assert_eq!(e["dlq_source_stream"], env.stream());
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let must_mention = match name.as_str() {
            "not-json.txt" => "not valid JSON",
            "schema-version-2.json" => "schema_version",
            "bad-started-at.json" => "started_at",
            "missing-call-id.json" => "call_id",
            "empty-tenant.json" => "tenant_id",
            "negative-seq.json" => "seq",
            "bad-role.json" => "turns[0].role",
            _ => "",
        };
        assert!(
            reason.contains(must_mention),
            "{name}: reason {reason:?} should mention {must_mention}"
        );
    }
    assert!(dlq.iter().any(|e| e["dlq_reason"].contains("no `payload`")));
    env.cleanup().await;
}

async fn the_same_report_published_twice_leaves_the_same_rows_as_once(db: Db, store: Store) {
    let env = spawn(db, store).await;
    let r = report("call-twice", 3, true, 6);
    env.publish_json(&r).await;
    let mut consumer = env.consumer();
    env.drain(&mut consumer).await;
    let once = env.dump().await;
    env.publish_json(&r).await;
    let second = env.drain(&mut consumer).await;
    assert_eq!((second.read, second.duplicate, second.stored), (1, 1, 0));
    assert_eq!(env.dump().await, once);
    // Both copies in one batch, on a fresh stack, give the same rows too (ids aside).
    let env2 = spawn(db, store).await;
    env2.publish_json(&r).await;
    env2.publish_json(&r).await;
    env2.drain(&mut env2.consumer()).await;
    assert_eq!(env2.count("conversation_turns").await, 6);
    assert_eq!(env2.count("session_events").await, 6);
    env.cleanup().await;
    env2.cleanup().await;
}

async fn an_entry_redelivered_after_its_commit_changes_nothing(db: Db, store: Store) {
    let env = spawn(db, store).await;
    let payload = serde_json::to_vec(&report("call-redelivered", 1, false, 4)).unwrap();
    env.publish(&payload).await;
    // A consumer that committed and died before XACK: commit through the pipeline, never acknowledge.
    let entry = call_insights::ingest::decode_entry(
        call_insights::ingest::RawEntry {
            id: "0-1".into(),
            fields: Some(vec![("payload".into(), payload.clone())]),
            deliveries: 1,
        },
        1 << 20,
    )
    .unwrap();
    env.app
        .ingestor()
        .ingest(std::slice::from_ref(&entry))
        .await
        .unwrap();
    let committed = env.dump().await;
    let r = env.drain(&mut env.consumer()).await;
    assert_eq!((r.read, r.duplicate), (1, 1));
    assert_eq!(env.dump().await, committed);
    assert_eq!(env.pending_count().await, 0);
    env.cleanup().await;
}

async fn a_final_report_before_its_partial_keeps_the_final(db: Db, store: Store) {
    let env = spawn(db, store).await;
    let mut consumer = env.consumer();
    env.publish_json(&report("call-ooo", 2, true, 6)).await;
    env.drain(&mut consumer).await;
    let after_final = env.dump().await;
    env.publish_json(&report("call-ooo", 0, false, 2)).await;
    env.publish_json(&report("call-ooo", 1, false, 4)).await;
    let r = env.drain(&mut consumer).await;
    assert_eq!(r.stale, 2, "{r:?}");
    assert_eq!(
        env.dump().await,
        after_final,
        "stale partials change nothing"
    );
    let s = env.session("call-ooo").await.unwrap();
    assert_eq!((s.report_seq, s.is_final, s.total_user_turns), (2, true, 3));
    assert!(
        env.app
            .metrics
            .entries_stale
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    env.cleanup().await;
}

async fn newer_reports_replace_older_turns_and_keep_rows_they_do_not_mention(db: Db, store: Store) {
    let env = spawn(db, store).await;
    let mut consumer = env.consumer();
    env.publish_json(&report("call-grow", 0, false, 4)).await;
    env.drain(&mut consumer).await;
    let mut newer = report("call-grow", 1, true, 3);
    newer["turns"][0]["content"] = json!("corrected transcript");
    env.publish_json(&newer).await;
    env.drain(&mut consumer).await;
    let rows = env
        .rows("SELECT turn_index, content, report_seq FROM conversation_turns ORDER BY turn_index")
        .await;
    assert_eq!(
        rows.len(),
        4,
        "turn 3 only the older report mentioned stays: {rows:?}"
    );
    assert_eq!(rows[0]["content"], "corrected transcript");
    assert_eq!(rows[0]["report_seq"], 1);
    assert_eq!(rows[3]["report_seq"], 0);
    let s = env.session("call-grow").await.unwrap();
    assert_eq!(
        (s.total_user_turns, s.total_agent_turns),
        (2, 2),
        "aggregates count every stored turn"
    );
    env.cleanup().await;
}

async fn reports_of_one_call_in_one_batch_merge_as_if_sequential(db: Db, store: Store) {
    let sequential = spawn(db, store).await;
    let batched = spawn(db, store).await;
    // In seq order, one at a time...
    let reports = [
        report("call-merge", 0, false, 5),
        report("call-merge", 1, false, 4),
        report("call-merge", 2, true, 3),
    ];
    let mut c1 = sequential.consumer();
    for r in &reports {
        sequential.publish_json(r).await;
        sequential.drain(&mut c1).await;
    }
    // ...gives what one batch gives in any order.
    for i in [2, 0, 1] {
        batched.publish_json(&reports[i]).await;
    }
    let r = batched.drain(&mut batched.consumer()).await;
    assert_eq!(r.read, 3);
    for q in [
        "SELECT * FROM conversation_turns ORDER BY turn_index",
        "SELECT * FROM session_events ORDER BY seq",
        "SELECT * FROM call_sessions",
    ] {
        assert_eq!(
            strip(batched.rows(q).await),
            strip(sequential.rows(q).await),
            "{q}"
        );
    }
    sequential.cleanup().await;
    batched.cleanup().await;
}

/// `INSIGHTS_INGEST_LANES`: a batch split by call into concurrent transactions leaves the same rows
/// and the same live events (one `call_started` and one `call_ended` per call, every turn once) as
/// one transaction per batch, whatever batch a call's reports land in. (SQLite always writes one
/// lane at a time: there the two runs are the same path.)
/// In a backlog the next batch is read (and decoded) while one commits: after one step more entries
/// are pending than were written, and a stop writes and acknowledges them before the loop ends,
/// reading nothing new.
async fn a_batch_read_ahead_while_one_commits_is_written_before_shutdown(db: Db, store: Store) {
    let env = spawn(db, store).await;
    for n in 0..100 {
        env.publish_json(&report(&format!("call-ahead-{n}"), 0, true, 2))
            .await;
    }
    let mut consumer = env.consumer();
    let first = consumer
        .process_next_batch()
        .await
        .expect("batch processes");
    assert!(first.read >= 16 && first.stored == first.read, "{first:?}");
    assert_eq!(env.count("call_sessions").await, first.read as i64);
    let ahead = env.pending_count().await;
    assert!(
        ahead > 0,
        "the next batch was read while the first committed"
    );
    let stop = tokio_util::sync::CancellationToken::new();
    stop.cancel();
    consumer.run(stop).await;
    assert_eq!(
        env.pending_count().await,
        0,
        "what was read ahead is written and acknowledged at shutdown"
    );
    assert_eq!(
        env.count("call_sessions").await,
        first.read as i64 + ahead,
        "and nothing new was read once stopping"
    );
    env.cleanup().await;
}

async fn a_backlog_written_in_lanes_stores_and_announces_what_one_transaction_does(
    db: Db,
    store: Store,
) {
    let one = spawn_with(db, store, |c| c.ingest_lanes = 1).await;
    let lanes = spawn_with(db, store, |c| c.ingest_lanes = 3).await;
    const CALLS: usize = 40;
    for env in [&one, &lanes] {
        // Reports interleaved across calls: batches of 16, 32, 64 … split calls between them.
        for seq in 0..3i64 {
            for n in 0..CALLS {
                let r = report(
                    &format!("call-lanes-{n}"),
                    seq,
                    seq == 2,
                    2 + 2 * seq as usize,
                );
                env.publish_json(&r).await;
            }
        }
        let r = env.drain(&mut env.consumer()).await;
        assert_eq!(r.read, 3 * CALLS);
        assert_eq!(r.failed + r.dead_lettered, 0, "{r:?}");
        env.app.live.flush().await;
    }
    for q in [
        "SELECT t.* , s.call_id FROM conversation_turns t JOIN call_sessions s ON s.id = t.session_id ORDER BY s.call_id, t.turn_index",
        "SELECT e.*, s.call_id FROM session_events e JOIN call_sessions s ON s.id = e.session_id ORDER BY s.call_id, e.seq",
        "SELECT * FROM call_sessions ORDER BY call_id",
        "SELECT d.code, d.turn_index, s.call_id FROM diagnosis_issues d JOIN call_sessions s ON s.id = d.session_id ORDER BY s.call_id, d.code, d.turn_index",
    ] {
        let (a, b) = (strip(one.rows(q).await), strip(lanes.rows(q).await));
        assert!(!a.is_empty() || q.contains("diagnosis_issues"), "{q}");
        assert_eq!(b, a, "{q}");
    }
    let finals = lanes
        .rows("SELECT call_id FROM call_sessions WHERE is_final AND report_seq = 2")
        .await;
    assert_eq!(finals.len(), CALLS);
    // Live events: counted per call and kind.
    let tally = |entries: Vec<(String, String, String, serde_json::Value)>| {
        let mut out = std::collections::BTreeMap::<(String, String), usize>::new();
        for (_, kind, _, body) in entries {
            let call = body["call_id"].as_str().unwrap_or_default().to_string();
            let key = match kind.as_str() {
                "turn" => format!("turn {}", body["turn_index"]),
                _ => kind,
            };
            *out.entry((call, key)).or_default() += 1;
        }
        out
    };
    let (a, b) = (
        tally(one.live_entries().await),
        tally(lanes.live_entries().await),
    );
    for n in 0..CALLS {
        let call = format!("call-lanes-{n}");
        for kind in ["call_started", "call_ended"] {
            assert_eq!(
                b.get(&(call.clone(), kind.into())),
                Some(&1),
                "{call} {kind}"
            );
        }
    }
    assert_eq!(b, a, "the same events, as often");
    one.cleanup().await;
    lanes.cleanup().await;
}

/// Rows without what differs between two databases holding the same facts (ids and timestamps).
fn strip(rows: Vec<serde_json::Value>) -> Vec<String> {
    rows.into_iter()
        .map(|mut v| {
            for k in ["session_id", "id", "created_at", "updated_at"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v.to_string()
        })
        .collect()
}

async fn entries_left_pending_by_a_dead_consumer_are_reclaimed_and_stored(db: Db, store: Store) {
    let env = spawn_with(db, store, |c| c.claim_idle_ms = 0).await;
    for i in 0..5 {
        env.publish_json(&report(&format!("call-orphan-{i}"), 0, true, 2))
            .await;
    }
    // Another replica reads them and dies without XACK.
    env.read_and_die("crashed-replica", 100).await;
    let mut consumer = env.consumer();
    assert_eq!(env.pending_count().await, 5);
    let r = env.drain(&mut consumer).await;
    assert_eq!(r.stored, 5, "{r:?}");
    assert_eq!(env.pending_count().await, 0);
    for i in 0..5 {
        assert!(env.session(&format!("call-orphan-{i}")).await.is_some());
    }
    env.cleanup().await;
}

async fn gzip_payloads_ingest(db: Db, store: Store) {
    use std::io::Write;
    let env = spawn(db, store).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&serde_json::to_vec(&report("call-gzip", 0, true, 4)).unwrap())
        .unwrap();
    env.publish_fields(&[
        ("payload", &gz.finish().unwrap()),
        ("payload_encoding", b"gzip"),
    ])
    .await;
    let r = env.drain(&mut env.consumer()).await;
    assert_eq!(r.stored, 1, "{r:?}");
    assert_eq!(env.session("call-gzip").await.unwrap().total_user_turns, 2);
    env.cleanup().await;
}

fn with_segments(call_id: &str, segments: serde_json::Value) -> serde_json::Value {
    let mut r = report(call_id, 0, true, 2);
    r["audio_segments"] = segments;
    r
}

async fn audio_in_all_three_forms_is_stored_and_measured(db: Db, store: Store) {
    let env = spawn(db, store).await;
    let field_wav = tone_wav(1000, 0.5);
    let b64_wav = tone_wav(500, 0.25);
    let s3_wav = tone_wav(250, 0.1);
    let uploaded_key = format!(
        "{}agent-uploads/call-audio/near.wav",
        env.app.config.s3_prefix
    );
    env.app
        .store
        .put(&uploaded_key, &s3_wav, "audio/wav")
        .await
        .unwrap();
    let r = with_segments(
        "call-audio",
        json!([
            {"segment_id": "stt_input-0", "segment_type": "stt_input", "turn_index": 0, "offset_ms": 0, "audio": {"field": "audio:stt_input-0"}},
            {"segment_id": "full_pre", "segment_type": "full_pre_rnnoise", "offset_ms": 0, "audio": {"b64": base64::engine::general_purpose::STANDARD.encode(&b64_wav)}},
            {"segment_id": "near", "segment_type": "near_miss", "audio": {"s3_key": uploaded_key, "bucket": null}},
            {"segment_id": "gone", "segment_type": "near_miss", "audio": {"s3_key": "does/not/exist.wav"}},
            {"segment_id": "no-field", "segment_type": "stt_input", "turn_index": 0, "audio": {"field": "audio:absent"}},
            {"segment_id": "none", "segment_type": "full_post_rnnoise", "audio": null},
        ]),
    );
    env.publish_fields(&[
        ("payload", &serde_json::to_vec(&r).unwrap()),
        ("audio:stt_input-0", &field_wav),
    ])
    .await;
    let rep = env.drain(&mut env.consumer()).await;
    assert_eq!(rep.stored, 1, "{rep:?}");
    let segs = env.segments("call-audio").await;
    let by_id = |id: &str| {
        segs.iter()
            .find(|s| s.segment_id == id)
            .unwrap_or_else(|| panic!("{id} missing"))
    };

    let f = by_id("stt_input-0");
    assert_eq!(
        (f.status.as_str(), f.source.as_str(), f.duration_ms),
        ("stored", "field", Some(1000))
    );
    assert!(
        (f.rms_mean.unwrap() - 0.5 / 2f64.sqrt()).abs() < 0.01,
        "{f:?}"
    );
    assert!((f.peak_dbfs.unwrap() + 6.02).abs() < 0.1, "{f:?}");
    assert_eq!(
        env.app
            .store
            .get(None, f.s3_key.as_ref().unwrap())
            .await
            .unwrap()
            .unwrap(),
        field_wav
    );

    let b = by_id("full_pre");
    assert_eq!(
        (b.status.as_str(), b.source.as_str(), b.duration_ms),
        ("stored", "b64", Some(500))
    );
    assert_eq!(
        env.app
            .store
            .get(None, b.s3_key.as_ref().unwrap())
            .await
            .unwrap()
            .unwrap(),
        b64_wav
    );

    let s = by_id("near");
    assert_eq!(
        (s.status.as_str(), s.source.as_str(), s.s3_key.as_deref()),
        ("stored", "s3_key", Some(uploaded_key.as_str()))
    );
    assert_eq!(s.duration_ms, Some(250));

    assert_eq!(by_id("gone").status.as_str(), "missing");
    assert!(by_id("gone").error.as_ref().unwrap().contains("not found"));
    assert_eq!(by_id("no-field").status.as_str(), "missing");
    assert!(
        by_id("no-field")
            .error
            .as_ref()
            .unwrap()
            .contains("audio:absent")
    );
    assert_eq!(by_id("none").status.as_str(), "missing");
    assert!(env.session("call-audio").await.unwrap().has_near_miss);
    env.cleanup().await;
}

async fn a_truncated_wav_is_recorded_as_an_error_and_the_rest_of_the_report_is_stored(
    db: Db,
    store: Store,
) {
    let env = spawn(db, store).await;
    let wav = tone_wav(1000, 0.3);
    let truncated = &wav[..wav.len() / 2];
    let r = with_segments(
        "call-truncated",
        json!([
            {"segment_id": "broken", "segment_type": "stt_input", "turn_index": 0, "audio": {"field": "audio:broken"}},
            {"segment_id": "garbage", "segment_type": "stt_input", "turn_index": 0, "audio": {"b64": "bm90IGEgd2F2"}},
            {"segment_id": "bad-b64", "segment_type": "stt_input", "turn_index": 0, "audio": {"b64": "@@@"}},
            {"segment_id": "fine", "segment_type": "stt_input", "turn_index": 0, "audio": {"field": "audio:fine"}},
        ]),
    );
    env.publish_fields(&[
        ("payload", &serde_json::to_vec(&r).unwrap()),
        ("audio:broken", truncated),
        ("audio:fine", &wav),
    ])
    .await;
    let rep = env.drain(&mut env.consumer()).await;
    assert_eq!((rep.stored, rep.dead_lettered), (1, 0), "{rep:?}");
    assert_eq!(env.pending_count().await, 0);
    let segs = env.segments("call-truncated").await;
    let by_id = |id: &str| segs.iter().find(|s| s.segment_id == id).unwrap();
    let broken = by_id("broken");
    assert_eq!(broken.status.as_str(), "error");
    assert!(
        broken.error.as_ref().unwrap().contains("truncated WAV"),
        "{broken:?}"
    );
    assert!(
        broken.s3_key.is_some(),
        "what the agent sent is kept as evidence"
    );
    assert!(
        by_id("garbage")
            .error
            .as_ref()
            .unwrap()
            .contains("not a WAV")
    );
    assert!(by_id("bad-b64").error.as_ref().unwrap().contains("base64"));
    assert_eq!(by_id("fine").status.as_str(), "stored");
    assert_eq!(env.count("conversation_turns").await, 2);
    env.cleanup().await;
}

async fn an_entry_that_keeps_failing_goes_to_the_dlq_after_the_delivery_limit(
    db: Db,
    store: Store,
) {
    let env = spawn_with(db, store, |c| {
        c.claim_idle_ms = 0;
        c.max_deliveries = 3;
    })
    .await;
    // A database rule this one report always breaks (a stand-in for any persistent per-entry failure).
    let ddl = match db {
        Db::Postgres => {
            "ALTER TABLE call_sessions ADD CONSTRAINT no_poison CHECK (call_id <> 'call-poison')"
        }
        Db::Sqlite => {
            "CREATE TRIGGER no_poison BEFORE INSERT ON call_sessions WHEN NEW.call_id = 'call-poison' BEGIN SELECT RAISE(ABORT, 'poison'); END"
        }
    };
    sea_orm::ConnectionTrait::execute_unprepared(&env.app.db, ddl)
        .await
        .unwrap();
    env.publish_json(&report("call-ok-1", 0, true, 2)).await;
    let poison_id = env.publish_json(&report("call-poison", 0, true, 2)).await;
    env.publish_json(&report("call-ok-2", 0, true, 2)).await;
    let r = env.drain(&mut env.consumer()).await;
    assert_eq!(
        r.stored, 2,
        "entries around the failing one are stored: {r:?}"
    );
    assert_eq!(
        r.failed, 3,
        "tried once per delivery up to the limit: {r:?}"
    );
    assert_eq!(r.dead_lettered, 1);
    let dlq = env.dlq_entries().await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["dlq_original_id"], poison_id);
    assert!(
        dlq[0]["dlq_reason"].contains("delivered 4 times (limit 3)"),
        "{:?}",
        dlq[0]["dlq_reason"]
    );
    assert_eq!(env.pending_count().await, 0);
    env.cleanup().await;
}

async fn nul_characters_in_text_are_stored(db: Db, store: Store) {
    let env = spawn(db, store).await;
    let mut r = report("call-nul", 0, true, 2);
    r["turns"][0]["content"] = json!("before\u{0}after");
    r["events"][0]["data"] = json!({"transcript": "a\u{0}b", "k\u{0}": 1});
    env.publish_json(&r).await;
    let rep = env.drain(&mut env.consumer()).await;
    assert_eq!(
        (rep.stored, rep.failed, rep.dead_lettered),
        (1, 0, 0),
        "{rep:?}"
    );
    let rows = env
        .rows("SELECT content FROM conversation_turns WHERE turn_index = 0")
        .await;
    assert_eq!(rows[0]["content"], "before\u{FFFD}after");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_entry_deleted_from_the_stream_is_acknowledged_and_skipped() {
    let env = spawn(Db::Postgres, Store::Fs).await;
    let mut conn = env.conn().await;
    let id = env.publish_json(&report("call-deleted", 0, true, 2)).await;
    env.publish_json(&report("call-kept", 0, true, 2)).await;
    // This very consumer (same name) read them, then crashed.
    env.read_and_die(&format!("test-{}", env.id), 10).await;
    let _: i64 = redis::cmd("XDEL")
        .arg(env.stream())
        .arg(&id)
        .query_async(&mut conn)
        .await
        .unwrap();
    // A restarted consumer with the same name re-reads its own pending entries first.
    let r = env.drain(&mut env.consumer()).await;
    assert_eq!((r.deleted, r.stored), (1, 1), "{r:?}");
    assert_eq!(env.pending_count().await, 0);
    assert!(env.session("call-kept").await.is_some());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_consumers_with_nothing_pending_are_removed_from_the_group() {
    let env = spawn_with(Db::Sqlite, Store::Fs, |c| c.dead_consumer_idle_ms = 0).await;
    let mut conn = env.conn().await;
    let group = env.app.config.consumer_group.clone();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(env.stream())
        .arg(&group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(env.stream())
        .arg(&group)
        .arg("ghost")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut consumer = env.consumer();
    env.drain(&mut consumer).await;
    let v: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(env.stream())
        .arg(&group)
        .query_async(&mut conn)
        .await
        .unwrap();
    let text = format!("{v:?}");
    assert!(!text.contains("ghost"), "{text}");
    assert!(
        text.contains(&format!("test-{}", env.id)),
        "the live consumer stays: {text}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_is_recreated_with_its_group_and_consumption_goes_on() {
    let env = spawn(Db::Sqlite, Store::Fs).await;
    let mut consumer = env.consumer();
    env.publish_json(&report("call-before", 0, true, 2)).await;
    env.drain(&mut consumer).await;
    let _: () = redis::cmd("DEL")
        .arg(env.stream())
        .query_async(&mut env.conn().await)
        .await
        .unwrap();
    env.publish_json(&report("call-after", 0, true, 2)).await;
    env.drain(&mut consumer).await; // NOGROUP → group recreated at 0
    env.drain(&mut consumer).await;
    assert!(env.session("call-after").await.is_some());
    env.cleanup().await;
}

async fn a_call_written_by_another_replica_in_between_is_applied_in_full(db: Db, store: Store) {
    use call_insights::ingest::{Ingestor, RawEntry, decode_entry, row_cache::RowCache};
    let env = spawn(db, store).await;
    let decode = |v: &serde_json::Value| {
        let raw = RawEntry {
            id: "0-1".into(),
            fields: Some(vec![("payload".into(), serde_json::to_vec(v).unwrap())]),
            deliveries: 1,
        };
        decode_entry(raw, 1 << 20).unwrap()
    };
    let here = env.app.ingestor();
    let replica = Ingestor::new(
        env.app.db.clone(),
        env.app.store.clone(),
        String::new(),
        2,
        std::sync::Arc::new(RowCache::new(100)),
        env.app.thresholds.clone(),
    );
    let seq0 = report("call-two-replicas", 0, false, 4);
    let mut seq1 = report("call-two-replicas", 1, false, 4);
    seq1["turns"][0]["content"] = json!("what the other replica stored");
    seq1["turns"][1]["e2e_latency_ms"] = json!(5000.0);
    let mut seq2 = report("call-two-replicas", 2, true, 4);
    seq2["turns"][0] = seq0["turns"][0].clone(); // back to what this process last wrote
    seq2["turns"][1] = seq0["turns"][1].clone();
    here.ingest(&[decode(&seq0)]).await.unwrap();
    replica.ingest(&[decode(&seq1)]).await.unwrap();
    here.ingest(&[decode(&seq2)]).await.unwrap();
    let rows = env
        .rows("SELECT turn_index, content FROM conversation_turns ORDER BY turn_index")
        .await;
    assert_eq!(rows[0]["content"], seq0["turns"][0]["content"], "{rows:?}");
    let s = env.session("call-two-replicas").await.unwrap();
    let expected = (seq0["turns"][1]["e2e_latency_ms"].as_f64().unwrap()
        + seq2["turns"][3]["e2e_latency_ms"].as_f64().unwrap())
        / 2.0;
    assert!(
        (s.avg_e2e_latency_ms.unwrap() - expected).abs() < 1e-9,
        "{s:?}"
    );
    assert_eq!(
        (s.report_seq, s.total_user_turns, s.total_agent_turns),
        (2, 2, 2)
    );
    env.cleanup().await;
}

/// Ten replicas starting at once on one fresh PostgreSQL database: every one migrates (or waits for
/// the one that does) and starts; each migration is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_replicas_starting_at_once_migrate_once() {
    use sea_orm::{ConnectionTrait, Database};
    let admin_url = std::env::var("INSIGHTS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into());
    let name = format!("ci_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let admin = Database::connect(&admin_url).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let starts = (0..10).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let db =
                call_insights::db::connect(&url, call_insights::db::PoolSettings::new(3)).await?;
            call_insights::db::migrate(&db).await?;
            db.close().await.ok();
            anyhow::Ok(())
        })
    });
    for r in futures::future::join_all(starts).await {
        r.unwrap()
            .expect("a replica migrates or waits for the one that does");
    }
    let db = Database::connect(&url).await.unwrap();
    let rows = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT COUNT(*) AS n, COUNT(DISTINCT version) AS d FROM seaql_migrations".to_string(),
        ))
        .await
        .unwrap()
        .unwrap();
    let (n, d): (i64, i64) = (
        rows.try_get("", "n").unwrap(),
        rows.try_get("", "d").unwrap(),
    );
    assert_eq!(n, d, "each migration recorded once");
    use migration::MigratorTrait;
    assert_eq!(
        n as usize,
        migration::Migrator::migrations().len(),
        "every migration applied"
    );
    db.close().await.ok();
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .ok();
}
