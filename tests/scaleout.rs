//! Scale-out: the session stream in partitions (`INSIGHTS_STREAM_PARTITIONS`), every replica
//! consuming every partition in the group, dead letters and metrics per partition; and the same on
//! the 3-master Redis Cluster `scripts/services.sh` starts, with one master killed (SIGKILL) and
//! started again: its partitions stall, the others keep ingesting, and they resume.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use common::queue::{FAST, Published, check_total_queue, publish, replica, svc_alive};
use common::{Db, Store, eventually};
use std::process::Command;

fn metric_lines(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_partitions_two_replicas_on_one_redis() {
    let env = common::spawn_with(Db::Postgres, Store::S3, |c| c.stream_partitions = 4).await;
    let p = env.app.config.partitions();
    assert_eq!(p.streams()[3], format!("{}:{{3}}", env.stream()));
    let a = replica(&env, "replica-a");
    let b = replica(&env, "replica-b");
    let mut published = Published::new();
    publish(&env, "part", 60, 3, &mut published).await;
    // Every partition got calls (crc32 spreads 60 ids over 4), and each call stayed on one.
    let mut conn = env.broker_conn().await;
    for stream in p.streams() {
        let len: i64 = redis::cmd("XLEN")
            .arg(&stream)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(len >= 3, "{stream} holds {len} entries");
    }
    // A poison entry on partition 2 goes to partition 2's dead-letter stream.
    let _: String = redis::cmd("XADD")
        .arg(p.stream(2))
        .arg("*")
        .arg("payload")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually(90, "both replicas drained every partition", || async {
        env.unfinished().await == 0
    })
    .await;
    let dead: i64 = redis::cmd("XLEN")
        .arg(p.dlq(2))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dead, 1, "the poison entry is in {}", p.dlq(2));
    let _: i64 = redis::cmd("DEL")
        .arg(p.dlq(2))
        .query_async(&mut conn)
        .await
        .unwrap();
    check_total_queue(&env, &published).await;

    // Metrics per partition, from each replica. Every entry was read once by one of them (180 and
    // the poison entry); stored counts may be fewer (a replica that gets a call's older snapshot
    // after the other committed a newer one counts it stale), never more.
    let value = |l: &String| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    let (mut read, mut stored, mut dead) = ([0u64; 4], 0u64, 0u64);
    for svc in [&a, &b] {
        let m = svc.metrics().await;
        let lag = metric_lines(&m, "call_insights_consumer_lag{");
        assert_eq!(lag.len(), 4, "{lag:?}");
        assert!(lag.iter().all(|l| l.ends_with(" 0")), "{lag:?}");
        let reads = metric_lines(&m, "call_insights_partition_entries_read_total{");
        assert_eq!(reads.len(), 4, "{reads:?}");
        for (i, l) in reads.iter().enumerate() {
            assert!(l.contains(&format!("partition=\"{i}\"")), "{l}");
            read[i] += value(l);
        }
        stored += metric_lines(&m, "call_insights_partition_entries_stored_total{")
            .iter()
            .map(value)
            .sum::<u64>();
        dead += metric_lines(&m, "call_insights_partition_entries_dead_lettered_total{")
            .iter()
            .map(value)
            .sum::<u64>();
    }
    assert!(
        read.iter().all(|n| *n > 0),
        "every partition was read: {read:?}"
    );
    assert_eq!(
        read.iter().sum::<u64>(),
        181,
        "each entry read once: {read:?}"
    );
    assert_eq!(dead, 1);
    assert!((60..=180).contains(&stored), "{stored}");
    assert!(svc_alive(&a) && svc_alive(&b));
    drop((a, b));
    env.cleanup().await;
}

/// The cluster `scripts/services.sh` started: seed URLs and the folder of each node's config.
fn cluster() -> Option<(String, std::path::PathBuf)> {
    let urls = std::env::var("INSIGHTS_TEST_REDIS_CLUSTER_URLS").ok()?;
    let dir = std::env::var("INSIGHTS_TEST_REDIS_CLUSTER_DIR").ok()?;
    Some((urls, dir.into()))
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The port of the master serving `key`'s slot.
fn master_of(seed: u16, key: &str) -> u16 {
    let slot: u16 = redis_cli(seed, &["cluster", "keyslot", key])
        .trim()
        .parse()
        .unwrap();
    for line in redis_cli(seed, &["cluster", "nodes"]).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 || !f[2].contains("master") {
            continue;
        }
        let port: u16 = f[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        for range in &f[8..] {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>())
                && (lo..=hi).contains(&slot)
            {
                return port;
            }
        }
    }
    panic!("no master serves {key} (slot {slot})");
}

fn cluster_ok(port: u16) -> bool {
    redis_cli(port, &["cluster", "info"]).contains("cluster_state:ok")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_partitions_on_the_cluster_survive_a_master_killed() {
    let Some((urls, dir)) = cluster() else {
        panic!("INSIGHTS_TEST_REDIS_CLUSTER_URLS unset: run the tests through scripts/test.sh");
    };
    let seed_urls = urls.clone();
    let env = common::spawn_with(Db::Postgres, Store::S3, move |c| {
        c.stream_partitions = 4;
        c.redis_cluster_urls = Some(seed_urls);
    })
    .await;
    let p = env.app.config.partitions();
    let seed: u16 = 7000;
    // Which master holds which partition; kill one holding some but not all.
    let owners: Vec<u16> = p.streams().iter().map(|s| master_of(seed, s)).collect();
    let victim = owners
        .iter()
        .copied()
        .find(|port| owners.iter().filter(|o| *o == port).count() < owners.len())
        .expect("the partitions span more than one master");
    let stalled: Vec<u32> = (0..4).filter(|i| owners[*i as usize] == victim).collect();
    let healthy: Vec<u32> = (0..4).filter(|i| owners[*i as usize] != victim).collect();
    eprintln!("partitions on masters {owners:?}; killing {victim} (partitions {stalled:?})");

    let svc = env.start_service(&FAST);
    let mut published = Published::new();
    publish(&env, "cluster", 40, 2, &mut published).await;
    eventually(60, "ingested from every partition", || async {
        env.unfinished().await == 0
    })
    .await;
    check_total_queue(&env, &published).await;

    let pid = std::fs::read_to_string(dir.join(victim.to_string()).join("redis.pid"))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    // While it is down: calls of the healthy partitions are published and stored.
    let mut during = Published::new();
    let mut n = 0;
    while during.len() < 20 {
        let id = format!("during-{n}");
        n += 1;
        if healthy.contains(&p.of_call(&id)) {
            env.publish_json(&common::report(&id, 0, true, 2)).await;
            during.insert(id, (0, 2));
        }
    }
    eventually(60, "the healthy partitions kept ingesting", || async {
        let mut done = true;
        for id in during.keys() {
            done &= env.session(id).await.is_some();
        }
        done
    })
    .await;
    assert!(
        svc_alive(&svc),
        "the service stays up while a master is down"
    );
    // Its partitions' consumers noticed (logged once per outage, naming the stream).
    let stalled_stream = p.stream(stalled[0]);
    eventually(30, "the stalled partition's outage is logged", || async {
        svc.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("ingest paused") && l.contains(&stalled_stream))
    })
    .await;

    // Started again from its config (AOF and nodes.conf): its partitions resume.
    let conf = dir.join(victim.to_string()).join("redis.conf");
    assert!(
        Command::new("redis-server")
            .arg(&conf)
            .status()
            .unwrap()
            .success()
    );
    eventually(60, "the cluster is whole again", || async {
        [7000, 7001, 7002].iter().all(|p| cluster_ok(*p))
    })
    .await;
    published.extend(during);
    let mut after = Published::new();
    publish(&env, "after", 40, 2, &mut after).await;
    assert!(
        after.keys().any(|id| stalled.contains(&p.of_call(id))),
        "some calls went to the restarted master's partitions"
    );
    published.extend(after);
    eventually(90, "every partition drained after the restart", || async {
        env.unfinished().await == 0
    })
    .await;
    check_total_queue(&env, &published).await;
    assert!(svc_alive(&svc));
    assert!(
        svc.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("ingest resumed") && l.contains(&stalled_stream)),
        "the stalled partition resumed"
    );
    let ready = reqwest::get(svc.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    drop(svc);
    env.cleanup().await;
}
