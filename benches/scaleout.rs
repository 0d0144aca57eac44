//! Scale-out: ingest throughput of 1, 2 and 4 replicas (real `call-insights` processes, one
//! consumer per partition each) over 4 partitions, on one Redis and on the 3-master Redis Cluster
//! `scripts/services.sh` starts, beside the unpartitioned baseline (1 replica, 1 stream). Each run
//! publishes the same calls (JSON reports of ≈13 turns, no audio, 1 partial + 1 final each) before
//! the replicas start, then times the drain: replicas started to every partition's lag and pending
//! at zero. Prints entries/s per configuration.
//!
//! `cargo bench --bench scaleout` (after `eval "$(scripts/services.sh)"`). `SCALEOUT_CALLS`
//! (default 15000) sets the calls per run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[path = "support/mod.rs"]
mod support;

use call_insights::broker::Broker;
use call_insights::config::Config;
use call_insights::ingest::partition::Partitions;
use call_insights::produce::{self, ProduceOptions};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// CPU seconds (user + system) used so far by processes named `comm`, or by `pid`.
fn cpu_seconds(filter: impl Fn(u32, &str) -> bool) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !filter(pid, &stat[open + 1..close]) {
            continue;
        }
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let (u, s) = (
            f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0),
            f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0),
        );
        total += (u + s) / tick;
    }
    total
}

struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_replica(c: &Config, partitions: u32, name: &str) -> anyhow::Result<Replica> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_call-insights"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("INSIGHTS_REDIS_URL", &c.redis_url)
        .env("INSIGHTS_STREAM", &c.stream)
        .env("INSIGHTS_STREAM_PARTITIONS", partitions.to_string())
        .env("INSIGHTS_CONSUMER_NAME", name)
        .env("INSIGHTS_DATABASE_URL", c.database_url())
        .env("INSIGHTS_DATA_DIR", &c.data_dir)
        .env("INSIGHTS_HTTP_ADDR", "127.0.0.1:0")
        .env("INSIGHTS_BLOCK_MS", "200")
        .env("INSIGHTS_ANALYTICS", "off")
        .env("INSIGHTS_LIVE", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(urls) = &c.redis_cluster_urls {
        cmd.env("INSIGHTS_REDIS_CLUSTER_URLS", urls);
    }
    let mut child = cmd.spawn()?;
    // Drain its log so it never blocks on a full pipe.
    if let Some(err) = child.stderr.take() {
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("ERROR") {
                    eprintln!("{line}");
                }
            }
        });
    }
    Ok(Replica(child))
}

async fn unfinished(broker: &Broker, c: &Config, p: &Partitions) -> i64 {
    let Ok(mut conn) = broker.conn().await else {
        return i64::MAX;
    };
    let mut total = 0;
    for stream in p.streams() {
        let v: redis::Value = match redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut conn)
            .await
        {
            Ok(v) => v,
            Err(_) => return i64::MAX,
        };
        match call_insights::ingest::redis_reply::parse_groups(v)
            .into_iter()
            .find(|g| g.name == c.consumer_group)
        {
            Some(g) => total += g.pending + g.lag.unwrap_or(i64::MAX / 8),
            None => return i64::MAX,
        }
    }
    total
}

async fn run(
    label: &str,
    cluster: Option<&str>,
    partitions: u32,
    replicas: usize,
    calls: usize,
) -> anyhow::Result<f64> {
    let (db, mut c) = support::fresh("scaleout").await?;
    c.stream_partitions = partitions;
    c.redis_cluster_urls = cluster.map(str::to_string);
    // Migrate once before the replicas start (they would wait on the advisory lock otherwise).
    {
        let conn = call_insights::db::connect(&c.database_url(), c.pool_settings()).await?;
        call_insights::db::migrate(&conn).await?;
        conn.close().await.ok();
    }
    let broker = Broker::open(&c.redis_url, c.redis_cluster_urls.as_deref())?;
    let p = c.partitions();
    let opts = ProduceOptions {
        calls,
        partials: 1,
        audio: false,
        gzip: false,
        concurrency: 50,
        seed: 11,
        call_prefix: format!("so-{replicas}"),
        ..Default::default()
    };
    let mut conn = produce::connect(&broker).await?;
    let (entries, _) = produce::publish_partitioned(&mut conn, &p, &opts, None).await?;
    let pg_before = cpu_seconds(|_, comm| comm == "postgres");
    let redis_before = cpu_seconds(|_, comm| comm.starts_with("redis-server"));
    let started = Instant::now();
    let procs = (0..replicas)
        .map(|i| start_replica(&c, partitions, &format!("replica-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let deadline = started + Duration::from_secs(600);
    while unfinished(&broker, &c, &p).await > 0 {
        if Instant::now() > deadline {
            anyhow::bail!("{label}: not drained within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let pids: Vec<u32> = procs.iter().map(|p| p.0.id()).collect();
    let replicas_cpu = cpu_seconds(|pid, _| pids.contains(&pid));
    let pg_cpu = cpu_seconds(|_, comm| comm == "postgres") - pg_before;
    let redis_cpu = cpu_seconds(|_, comm| comm.starts_with("redis-server")) - redis_before;
    drop(procs);
    for key in p.streams().into_iter().chain(p.dlqs()) {
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(key).query_async(&mut conn).await;
    }
    db.drop_all().await?;
    let rate = entries as f64 / secs;
    println!(
        "{label:<26} {replicas} replica(s) × {partitions} partition(s): {entries} entries in {secs:.2} s = {rate:.0} entries/s (incl. process start); CPU s: replicas {replicas_cpu:.1}, PostgreSQL {pg_cpu:.1}, Redis {redis_cpu:.1} ({:.0} % of the 2 cores)",
        (replicas_cpu + pg_cpu + redis_cpu) / (secs * 2.0) * 100.0
    );
    Ok(rate)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let calls: usize = std::env::var("SCALEOUT_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15_000);
    let cluster = std::env::var("INSIGHTS_TEST_REDIS_CLUSTER_URLS").ok();
    println!(
        "scale-out: {calls} calls × 2 reports, 4 partitions, PostgreSQL at {}, {} cores",
        support::env_or(
            "INSIGHTS_TEST_DATABASE_URL",
            "postgres://root@127.0.0.1:5432/postgres"
        ),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    run("one Redis, one stream", None, 1, 1, calls).await?;
    for replicas in [1, 2, 4] {
        run("one Redis", None, 4, replicas, calls).await?;
    }
    match &cluster {
        Some(urls) => {
            for replicas in [1, 2, 4] {
                run("Redis Cluster (3 masters)", Some(urls), 4, replicas, calls).await?;
            }
        }
        None => println!("INSIGHTS_TEST_REDIS_CLUSTER_URLS unset: cluster runs skipped"),
    }
    Ok(())
}
