//! Ingest benchmark: publishes N calls × (partials + final) to a fresh stream, starts the release
//! binary against a fresh PostgreSQL database (and Garage for audio), and reports how fast it drains
//! the stream: entries/s, rows/s and the service's peak RSS. Figures only, never assertions.
//!
//!   eval "$(scripts/services.sh)"
//!   cargo bench --bench ingest                                  # 2,000 calls × 3 entries, no audio
//!   cargo bench --bench ingest -- --audio --calls 200           # ≈60 s of 16 kHz audio per call, to Garage
//!
//! Options: --calls N --partials K --audio --gzip --concurrency C --batch-size B --sqlite
//! (`BENCH_KEEP_DB=1` keeps the run's database for inspection; `INSIGHTS_INGEST_LANES` is passed on)
//!          --analytics offline|off (post-call analytics in the service, default offline)
//!          --live true|false (live monitoring events, default true)
//!
//! Every run also prints where the time went: the service's and PostgreSQL's CPU seconds over the
//! drain, the ingest transaction's phases summed over every batch (from the service's trace), and
//! the same-run COPY limit of the stored rows with the ratio.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use call_insights::ingest::redis_reply::parse_groups;
use call_insights::produce::{self, ProduceOptions};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use std::io::BufRead;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

struct Args {
    calls: usize,
    partials: usize,
    audio: bool,
    gzip: bool,
    concurrency: usize,
    batch_size: Option<String>,
    sqlite: bool,
    /// `INSIGHTS_ANALYTICS` of the service: `offline` (the default), `off`.
    analytics: String,
    /// `INSIGHTS_LIVE` of the service (default true).
    live: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        calls: 2000,
        partials: 2,
        audio: false,
        gzip: false,
        concurrency: 2000,
        batch_size: None,
        sqlite: false,
        analytics: "offline".into(),
        live: "true".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--calls" => a.calls = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.calls),
            "--partials" => {
                a.partials = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.partials)
            }
            "--concurrency" => {
                a.concurrency = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(a.concurrency)
            }
            "--batch-size" => a.batch_size = it.next(),
            "--audio" => a.audio = true,
            "--gzip" => a.gzip = true,
            "--sqlite" => a.sqlite = true,
            "--analytics" => a.analytics = it.next().unwrap_or(a.analytics),
            "--live" => a.live = it.next().unwrap_or(a.live),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// What COPYing a run's rows took.
struct CopyLimit {
    tables: usize,
    rows: i64,
    secs: f64,
}

fn psql(url: &str, script: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new("psql")
        .arg(url)
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", script])
        .output()?;
    if !out.status.success() {
        anyhow::bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The database's own speed for what the run stored: every table the service wrote is exported
/// (binary COPY, not timed), a fresh database is migrated by the service binary, and the rows are
/// COPYed into it in one transaction, parents before children (same tables, same indexes and
/// foreign keys) — the time of that transaction is the limit.
async fn copy_limit(
    src_url: &str,
    admin_url: &str,
    tmp: &std::path::Path,
    id: &str,
) -> anyhow::Result<CopyLimit> {
    // Tables with rows (the migration bookkeeping and the service's own secret are not ingest).
    let listed = psql(
        src_url,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' \
         AND c.relname NOT IN ('seaql_migrations', 'service_secrets') ORDER BY 1",
    )?;
    let mut tables = Vec::new();
    for t in listed.lines().filter(|l| !l.is_empty()) {
        let n: i64 = psql(src_url, &format!("SELECT count(*) FROM \"{t}\""))?
            .trim()
            .parse()?;
        if n > 0 {
            tables.push((t.to_string(), n));
        }
    }
    // Parents first: order by foreign keys among the tables.
    let fks = psql(
        src_url,
        "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint \
         WHERE contype = 'f'",
    )?;
    let deps: Vec<(String, String)> = fks
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(a, b)| {
            (
                a.trim_matches('"').to_string(),
                b.trim_matches('"').to_string(),
            )
        })
        .collect();
    let mut ordered: Vec<(String, i64)> = Vec::new();
    let mut left = tables.clone();
    while !left.is_empty() {
        let before = left.len();
        let mut i = 0;
        while i < left.len() {
            let t = &left[i].0;
            let waits = deps.iter().any(|(child, parent)| {
                child == t && parent != t && left.iter().any(|(l, _)| l == parent)
            });
            if waits {
                i += 1;
            } else {
                ordered.push(left.remove(i));
            }
        }
        if left.len() == before {
            anyhow::bail!("foreign keys form a cycle among {left:?}");
        }
    }
    let dir = tmp.join("copy");
    std::fs::create_dir_all(&dir)?;
    for (t, _) in &ordered {
        let file = dir.join(format!("{t}.bin"));
        psql(
            src_url,
            &format!("\\copy \"{t}\" TO '{}' (FORMAT binary)", file.display()),
        )?;
    }
    // A fresh database migrated by the service.
    let target = format!("bench_{id}_copy");
    psql(admin_url, &format!("CREATE DATABASE \"{target}\""))?;
    let target_url = format!(
        "{}/{target}",
        admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(admin_url)
    );
    let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_call-insights"))
        .arg("migrate")
        .env("INSIGHTS_DATABASE_URL", &target_url)
        .env("INSIGHTS_DATA_DIR", tmp)
        .env("RUST_LOG", "warn")
        .output()?;
    if !migrated.status.success() {
        anyhow::bail!(
            "migrate: {}",
            String::from_utf8_lossy(&migrated.stderr).trim()
        );
    }
    let mut script = String::from("BEGIN;\n");
    for (t, _) in &ordered {
        script.push_str(&format!(
            "\\copy \"{t}\" FROM '{}' (FORMAT binary)\n",
            dir.join(format!("{t}.bin")).display()
        ));
    }
    script.push_str("COMMIT;\n");
    let file = dir.join("load.sql");
    std::fs::write(&file, script)?;
    let t = Instant::now();
    let out = std::process::Command::new("psql")
        .arg(&target_url)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .output()?;
    let secs = t.elapsed().as_secs_f64();
    let _ = psql(
        admin_url,
        &format!("DROP DATABASE IF EXISTS \"{target}\" WITH (FORCE)"),
    );
    if !out.status.success() {
        anyhow::bail!("COPY: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(CopyLimit {
        tables: ordered.len(),
        rows: ordered.iter().map(|(_, n)| n).sum(),
        secs,
    })
}

/// CPU seconds (user + system) a process has used.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds used by every PostgreSQL process on this machine.
fn postgres_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(cpu_secs)
        .sum()
}

/// Sums the `phases=` of the service's "batch written" trace lines.
#[derive(Default)]
struct PhaseTotals {
    batches: u64,
    ms: Vec<(String, u64)>,
}

impl PhaseTotals {
    fn add(&mut self, line: &str) {
        let Some(start) = line.find("phases=") else {
            return;
        };
        self.batches += 1;
        let rest = line[start + 7..].trim_start_matches('"');
        for tok in rest.split_whitespace() {
            let Some((name, v)) = tok.split_once('=') else {
                break;
            };
            let Some(ms) = v.trim_end_matches('"').strip_suffix("ms") else {
                break;
            };
            let Ok(ms) = ms.parse::<u64>() else { break };
            match self.ms.iter_mut().find(|(n, _)| n == name) {
                Some((_, t)) => *t += ms,
                None => self.ms.push((name.to_string(), ms)),
            }
        }
    }
}

fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args();
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let stream = format!("bench:{id}:sessions");
    let redis_url = env_or("INSIGHTS_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let admin_url = env_or(
        "INSIGHTS_TEST_DATABASE_URL",
        "postgres://root@127.0.0.1:5432/postgres",
    );
    let tmp = std::env::temp_dir().join(format!("call-insights-bench-{id}"));
    std::fs::create_dir_all(&tmp)?;
    let db_name = format!("bench_{id}");
    let db_url = if args.sqlite {
        format!("sqlite://{}?mode=rwc", tmp.join("bench.db").display())
    } else {
        let admin = Database::connect(&admin_url).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{db_name}\""))
            .await?;
        format!(
            "{}/{db_name}",
            admin_url
                .rsplit_once('/')
                .map(|(b, _)| b)
                .unwrap_or(&admin_url)
        )
    };

    // 1. Publish everything first: the measurement is the drain, not the producer.
    let client = call_insights::broker::Broker::open(&redis_url, None)?;
    let mut conn = produce::connect(&client).await?;
    let opts = ProduceOptions {
        calls: args.calls,
        partials: args.partials,
        audio: args.audio,
        gzip: args.gzip,
        concurrency: args.concurrency,
        seed: 1,
        call_prefix: format!("bench-{id}"),
        ..Default::default()
    };
    let t = Instant::now();
    let (entries, bytes) = produce::publish(&mut conn, &stream, &opts, None).await?;
    println!(
        "published {entries} entries ({} calls × {} reports, {:.1} MB{}) in {:.1} s",
        args.calls,
        args.partials + 1,
        bytes as f64 / 1e6,
        if args.audio { ", with audio" } else { "" },
        t.elapsed().as_secs_f64()
    );

    // 2. Start the release binary against a fresh database and drain.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_call-insights"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info,call_insights::ingest::persist=trace")
        .env("INSIGHTS_REDIS_URL", &redis_url)
        .env("INSIGHTS_STREAM", &stream)
        .env("INSIGHTS_DATABASE_URL", &db_url)
        .env("INSIGHTS_DATA_DIR", &tmp)
        .env("INSIGHTS_HTTP_ADDR", "127.0.0.1:0")
        .env("INSIGHTS_CONSUMER_NAME", "bench")
        .env("INSIGHTS_ANALYTICS", &args.analytics)
        .env("INSIGHTS_LIVE", &args.live);
    for var in ["MALLOC_ARENA_MAX", "INSIGHTS_INGEST_LANES"] {
        if let Ok(v) = std::env::var(var) {
            cmd.env(var, v);
        }
    }
    if let Some(b) = &args.batch_size {
        cmd.env("INSIGHTS_BATCH_SIZE", b);
    }
    if args.audio {
        cmd.env(
            "INSIGHTS_S3_ENDPOINT_URL",
            env_or("INSIGHTS_TEST_S3_ENDPOINT_URL", "http://127.0.0.1:3900"),
        )
        .env(
            "INSIGHTS_S3_BUCKET",
            env_or("INSIGHTS_TEST_S3_BUCKET", "call-insights-test"),
        )
        .env(
            "INSIGHTS_S3_REGION",
            env_or("INSIGHTS_TEST_S3_REGION", "garage"),
        )
        .env(
            "INSIGHTS_S3_ACCESS_KEY",
            env_or("INSIGHTS_TEST_S3_ACCESS_KEY", "GK0123456789abcdef01234567"),
        )
        .env(
            "INSIGHTS_S3_SECRET_KEY",
            env_or(
                "INSIGHTS_TEST_S3_SECRET_KEY",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        )
        .env("INSIGHTS_S3_PREFIX", format!("bench-{id}/"));
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let phases = std::sync::Arc::new(std::sync::Mutex::new(PhaseTotals::default()));
    let phases_in = phases.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("batch written") {
                phases_in.lock().unwrap().add(&line);
                continue;
            }
            if line.contains("consumer started") {
                let _ = tx.send(());
            }
            if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("service: {line}");
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))?;
    let pg_cpu_before = postgres_cpu_secs();
    let service_cpu_before = cpu_secs(pid).unwrap_or(0.0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(1800);
    let mut first_read: Option<Duration> = None;
    loop {
        let v: redis::Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut conn)
            .await?;
        if let Some(g) = parse_groups(v).into_iter().next() {
            let read = g.entries_read.unwrap_or(0);
            if read > 0 && first_read.is_none() {
                first_read = Some(started.elapsed());
            }
            if g.pending == 0 && g.lag == Some(0) && read as u64 >= entries {
                break;
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("stream not drained within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss_kb = peak_rss_kb(pid);
    let service_cpu = cpu_secs(pid).unwrap_or(0.0) - service_cpu_before;
    let pg_cpu = postgres_cpu_secs() - pg_cpu_before;
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();

    // 3. Figures.
    let db = Database::connect(&db_url).await?;
    let backend = db.get_database_backend();
    let mut rows = 0i64;
    let mut counts = Vec::new();
    for table in [
        "call_sessions",
        "conversation_turns",
        "session_events",
        "audio_segments",
    ] {
        let r = db
            .query_one_raw(Statement::from_string(
                backend,
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no count"))?;
        let n: i64 = r.try_get("", "n")?;
        rows += n;
        counts.push(format!("{table}={n}"));
    }
    db.close().await.ok();
    println!("analytics: {}, live events: {}", args.analytics, args.live);
    println!(
        "database: {}",
        if backend == DbBackend::Postgres {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!("rows: {rows} ({})", counts.join(", "));
    println!(
        "drained {entries} entries in {elapsed:.2} s (first entry read after {:.0} ms)",
        first_read.unwrap_or_default().as_secs_f64() * 1000.0
    );
    println!("entries/s: {:.0}", entries as f64 / elapsed);
    println!("rows/s (final rows): {:.0}", rows as f64 / elapsed);
    if args.audio {
        println!("audio MB/s: {:.1}", bytes as f64 / 1e6 / elapsed);
    }
    match rss_kb {
        Some(kb) => println!("service peak RSS: {:.1} MB", kb as f64 / 1024.0),
        None => println!("service peak RSS: unavailable"),
    }
    println!(
        "CPU over the drain ({elapsed:.2} s wall, 2 cores = {:.2} core-s): service {service_cpu:.2} s, PostgreSQL {pg_cpu:.2} s",
        elapsed * 2.0
    );
    {
        let p = phases.lock().unwrap();
        let total: u64 = p.ms.iter().map(|(_, ms)| ms).sum();
        let parts: Vec<String> =
            p.ms.iter()
                .map(|(n, ms)| format!("{n} {:.2} s", *ms as f64 / 1000.0))
                .collect();
        println!(
            "ingest transaction phases over {} batches ({:.2} s): {}",
            p.batches,
            total as f64 / 1000.0,
            parts.join(", ")
        );
    }
    let service_rate = entries as f64 / elapsed;
    if args.sqlite {
        println!("COPY limit: PostgreSQL only");
    } else {
        match copy_limit(&db_url, &admin_url, &tmp, &id).await {
            Ok(limit) => {
                let copy_rate = entries as f64 / limit.secs;
                println!(
                    "COPY limit (same run): {} rows of {} tables into a fresh database the service migrated, one transaction, in {:.2} s",
                    limit.rows, limit.tables, limit.secs
                );
                println!(
                    "entries/s {service_rate:.0} | COPY entries/s {copy_rate:.0} | ratio {:.2}",
                    service_rate / copy_rate
                );
            }
            Err(e) => println!("COPY limit: not measured ({e:#})"),
        }
    }
    println!("reference (an earlier session, not this run): Python seed stack ≈ 220 entries/s");

    // 4. Clean up.
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .arg(format!("{stream}:dlq"))
        .arg(call_insights::live::events_stream(&stream))
        .query_async(&mut conn)
        .await
        .unwrap_or(());
    if std::env::var_os("BENCH_KEEP_DB").is_some() {
        println!("kept the database for inspection: {db_url}");
    } else if !args.sqlite {
        let admin = Database::connect(&admin_url).await?;
        admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
            ))
            .await?;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
