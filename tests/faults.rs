//! Faults proven survivable, against private servers this test starts on free ports (never the
//! shared ones): PostgreSQL stopped with `-m immediate` mid-ingest and started again; Redis (AOF,
//! `appendfsync always`) killed with SIGKILL and restarted on the same port; Redis frozen with
//! SIGSTOP. The real service binary keeps running through each, and one total-queue checker proves
//! the outcome: every published call stored exactly as its newest snapshot, nothing unexpected,
//! nothing left pending, no row pointing at a missing audio object.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use common::queue::{
    FAST, Published, check_total_queue, freeze_holding_entries, publish, replica, svc_alive,
    under_way,
};
use common::{Db, Store, eventually};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PostgreSQL server of this test's own: initdb into a temporary folder (as the `postgres` user:
/// initdb refuses root), on a free port.
struct PrivatePg {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivatePg {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries (scripts/services.sh installs them)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("pg_ctl").exists())
            .expect("pg_ctl");
        let dir = std::env::temp_dir().join(format!("ci-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = unsafe_root();
        if as_postgres {
            assert!(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let pg = PrivatePg {
            dir,
            port: free_port(),
            bin,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        pg.start_again();
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool).display().to_string();
        let status = if unsafe_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--", &exe])
                .args(args)
                .output()
                .unwrap()
        } else {
            Command::new(&exe).args(args).output().unwrap()
        };
        assert!(
            status.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }

    fn start_again(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("pg.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        );
    }

    fn stop_immediate(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn unsafe_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl").display().to_string();
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if unsafe_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--", &exe])
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis server of this test's own with AOF and `appendfsync always`.
struct PrivateRedis {
    dir: PathBuf,
    port: u16,
    child: std::process::Child,
    persistent: bool,
}

impl PrivateRedis {
    fn start(persistent: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("ci-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let child = Self::spawn(&dir, port, persistent);
        PrivateRedis {
            dir,
            port,
            child,
            persistent,
        }
    }

    fn spawn(dir: &std::path::Path, port: u16, persistent: bool) -> std::process::Child {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]);
        cmd.arg("--dir").arg(dir);
        if persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return child;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("private redis did not start");
    }

    fn kill9_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(&self.dir, self.port, self.persistent);
    }

    fn signal(&self, sig: &str) {
        assert!(
            Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(self.child.id().to_string())
                .status()
                .unwrap()
                .success()
        );
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_immediately_mid_ingest_and_started_again() {
    let pg = PrivatePg::start();
    let url = pg.url();
    let env =
        common::spawn_with(Db::Postgres, Store::S3, move |c| c.database_url = Some(url)).await;
    let svc = env.start_service(&FAST);
    let mut published = Published::new();
    // Mid-ingest: some of it stored, the rest not yet.
    under_way(&env, "pg", 60, 3, false, &mut published).await;
    pg.stop_immediate();
    publish(&env, "pg-down", 40, 2, &mut published).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        svc_alive(&svc),
        "the service kept running while the database was down"
    );
    pg.start_again();
    eventually(
        90,
        "everything stored after the database came back",
        || async { env.unfinished().await == 0 },
    )
    .await;
    check_total_queue(&env, &published).await;
    // (A short outage is absorbed by the pool's acquire wait; a longer one pauses ingest with
    // backoff, logged once: both end here, with everything stored once.)
    drop(svc);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_with_its_aof_then_frozen() {
    let mut redis = PrivateRedis::start(true);
    let url = redis.url();
    let env = common::spawn_with(Db::Postgres, Store::S3, move |c| c.redis_url = url).await;
    let svc = env.start_service(&FAST);
    let mut published = Published::new();
    under_way(&env, "redis", 60, 3, false, &mut published).await;
    redis.kill9_and_restart();
    // What was published before the kill survived in the AOF; more arrives after the restart.
    publish(&env, "redis-after", 30, 2, &mut published).await;
    eventually(90, "ingest resumed by itself", || async {
        env.unfinished().await == 0
    })
    .await;
    check_total_queue(&env, &published).await;

    // Frozen for 10 s: /readyz names Redis within its timeouts, ingest resumes after SIGCONT.
    redis.signal("STOP");
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    let r = http
        .get(svc.url("/readyz"))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap_or_default();
    println!(
        "readyz during the freeze answered in {:?}: {body}",
        started.elapsed()
    );
    assert!(
        body.to_lowercase().contains("redis"),
        "readyz names the dependency: {body}"
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    redis.signal("CONT");
    publish(&env, "redis-thawed", 20, 2, &mut published).await;
    eventually(90, "ingest resumed after SIGCONT", || async {
        env.unfinished().await == 0
    })
    .await;
    check_total_queue(&env, &published).await;
    assert!(svc_alive(&svc));
    drop(svc);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_persistence_is_a_counted_loss_not_an_outage() {
    let mut redis = PrivateRedis::start(false);
    let url = redis.url();
    let env = common::spawn_with(Db::Postgres, Store::Fs, move |c| c.redis_url = url).await;
    let svc = env.start_service(&FAST);
    let mut published = Published::new();
    publish(&env, "before", 20, 2, &mut published).await;
    eventually(60, "stored before the restart", || async {
        env.unfinished().await == 0
    })
    .await;
    // Redis comes back empty: the stream and the group are gone.
    redis.kill9_and_restart();
    publish(&env, "after", 20, 2, &mut published).await;
    eventually(90, "ingest goes on with what arrives after", || async {
        env.count("call_sessions").await == 40 && env.unfinished().await == 0
    })
    .await;
    check_total_queue(&env, &published).await;
    let metrics = svc.metrics().await;
    assert!(
        metrics.contains("call_insights_ingest_groups_recreated_total 1"),
        "the loss is counted: {}",
        metrics
            .lines()
            .filter(|l| l.contains("groups_recreated"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        svc.log_lines("reports published before and not yet stored are lost"),
        1,
        "logged once, as an error"
    );
    assert!(svc.log_lines("ERROR") >= 1);
    assert!(svc_alive(&svc));
    drop(svc);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_ingest_leaves_its_entries_to_the_survivor() {
    let env = common::spawn(Db::Postgres, Store::S3).await;
    let a = replica(&env, "replica-a");
    let b = replica(&env, "replica-b");
    let mut published = Published::new();
    under_way(&env, "kill", 80, 3, false, &mut published).await;
    // Killed while it holds entries (frozen first so the moment can be chosen).
    let held = freeze_holding_entries(&env, &a, "replica-a", &mut published).await;
    eprintln!("replica-a killed holding {held} pending entries");
    a.signal("KILL");
    publish(&env, "kill-after", 20, 2, &mut published).await;
    eventually(90, "the survivor claimed and stored everything", || async {
        env.unfinished().await == 0
    })
    .await;
    check_total_queue(&env, &published).await;
    assert!(svc_alive(&b));
    drop((a, b));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_replica_resumed_after_its_entries_were_claimed_changes_nothing() {
    let env = common::spawn(Db::Postgres, Store::S3).await;
    let a = replica(&env, "replica-a");
    let b = replica(&env, "replica-b");
    let mut published = Published::new();
    // A backlog long enough that the freeze below lands while replica-a holds entries on a fast day.
    under_way(&env, "freeze", 200, 3, false, &mut published).await;
    // Frozen past the claim idle time (3 s) while it holds entries: the other replica claims them.
    let held = freeze_holding_entries(&env, &a, "replica-a", &mut published).await;
    eprintln!("replica-a frozen holding {held} pending entries");
    publish(&env, "freeze-during", 20, 2, &mut published).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    eventually(90, "the other replica stored everything", || async {
        env.count("call_sessions").await == published.len() as i64
    })
    .await;
    // Resumed: whatever it was writing is older than what is stored; newest seq wins.
    a.signal("CONT");
    publish(&env, "freeze-after", 10, 2, &mut published).await;
    eventually(90, "both drained", || async { env.unfinished().await == 0 }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    check_total_queue(&env, &published).await;
    assert!(svc_alive(&a) && svc_alive(&b));
    drop((a, b));
    env.cleanup().await;
}

/// The shared PostgreSQL's URL for this test's database, through `proxy`.
fn through(url: &str, from: &str, proxy: &common::proxy::Proxy) -> String {
    assert!(url.contains(from), "{url} does not name {from}");
    url.replacen(from, &format!("127.0.0.1:{}", proxy.port), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_blackholed_then_healed_stalls_within_the_timeouts() {
    use common::proxy::{Mode, Proxy};
    use common::queue::{drained, logged, stalls_without_acknowledging};
    let env = common::spawn(Db::Postgres, Store::S3).await;
    let pg = Proxy::start("127.0.0.1:5432").await;
    let url = through(&env.app.config.database_url(), "127.0.0.1:5432", &pg);
    let mut extra: Vec<(&str, &str)> = FAST.to_vec();
    extra.extend([
        ("INSIGHTS_DATABASE_URL", url.as_str()),
        ("INSIGHTS_DB_TIMEOUT_MS", "2000"),
    ]);
    let svc = env.start_service(&extra);
    let mut published = Published::new();
    under_way(&env, "hole", 60, 3, false, &mut published).await;
    // Packets vanish: no error, no reset. Only the service's own time limits can notice.
    pg.set(Mode::Blackhole);
    publish(&env, "hole-during", 30, 2, &mut published).await;
    // Noticed within INSIGHTS_DB_TIMEOUT_MS (2 s) and a 5 s ping.
    stalls_without_acknowledging(&env, &svc, "database", Duration::from_secs(8)).await;
    pg.set(Mode::Pass);
    drained(&env).await;
    check_total_queue(&env, &published).await;
    assert!(logged(&svc, &["ingest resumed"]));
    drop(svc);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_object_store_down_for_30_s_mid_ingest_with_audio() {
    use common::proxy::{Mode, Proxy};
    use common::queue::{drained, logged, publish_with_audio, stalls_without_acknowledging};
    let env = common::spawn(Db::Postgres, Store::S3).await;
    let s3 = env.app.config.s3_endpoint_url.clone().unwrap();
    let target = s3.trim_start_matches("http://").to_string();
    let proxy = Proxy::start(&target).await;
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let mut extra: Vec<(&str, &str)> = FAST.to_vec();
    extra.extend([
        ("INSIGHTS_S3_ENDPOINT_URL", endpoint.as_str()),
        ("INSIGHTS_S3_TIMEOUT_MS", "2000"),
    ]);
    let svc = env.start_service(&extra);
    let mut published = Published::new();
    under_way(&env, "s3", 20, 3, true, &mut published).await;
    proxy.set(Mode::Down);
    publish_with_audio(&env, "s3-during", 10, 2, &mut published).await;
    stalls_without_acknowledging(&env, &svc, "audio store", Duration::from_secs(30)).await;
    proxy.set(Mode::Pass);
    drained(&env).await;
    // Every object exists (the checker reads each row's key back from Garage directly), and every
    // user turn of every call's newest snapshot has its audio.
    check_total_queue(&env, &published).await;
    let want: usize = published.values().map(|(_, turns)| turns.div_ceil(2)).sum();
    let got = env
        .rows("SELECT COUNT(*) AS n FROM audio_segments WHERE s3_key IS NOT NULL")
        .await;
    assert_eq!(got[0]["n"].as_i64().unwrap() as usize, want);
    assert!(logged(&svc, &["ingest resumed", "audio store"]));
    drop(svc);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_receiver_down_then_resetting_then_back_gets_every_delivery_once() {
    use common::proxy::{Mode, Proxy};
    let env = common::spawn(Db::Postgres, Store::S3).await;
    let (url, got) = common::hooks::receiver(vec![]).await;
    let proxy = Proxy::start(&format!("127.0.0.1:{}", common::hooks::port_of(&url))).await;
    let mut extra: Vec<(&str, &str)> = FAST.to_vec();
    extra.extend([
        ("INSIGHTS_ANALYTICS", "offline"),
        ("INSIGHTS_WEBHOOK_ALLOW_PRIVATE", "true"),
        (
            "INSIGHTS_WEBHOOK_RETRY_SCHEDULE",
            "1s,1s,2s,2s,2s,2s,2s,2s,2s,2s",
        ),
    ]);
    let svc = env.start_service(&extra);
    let http = reqwest::Client::new();
    let hook: serde_json::Value = http
        .post(svc.url("/api/v1/webhooks"))
        .json(
            &serde_json::json!({"url": format!("http://127.0.0.1:{}/hook", proxy.port),
            "events": ["call.analyzed"], "tenant_id": "acme"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = hook["secret"].as_str().unwrap().to_string();
    let hook_id = hook["id"].as_str().unwrap().to_string();
    // The receiver goes away (connection refused) before the calls end.
    proxy.set(Mode::Down);
    let calls: Vec<String> = (0..8).map(|i| format!("hooked-{i}")).collect();
    let mut published = Published::new();
    for c in &calls {
        env.publish_json(&common::report(c, 0, true, 4)).await;
        published.insert(c.clone(), (0, 4));
    }
    let deliveries = svc.url(&format!("/api/v1/webhooks/{hook_id}/deliveries"));
    eventually(60, "every delivery failed at least once", || async {
        let d: serde_json::Value = match http.get(&deliveries).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => return false,
        };
        let items = d["items"].as_array().cloned().unwrap_or_default();
        items.len() == calls.len()
            && items
                .iter()
                .all(|i| i["attempts"].as_i64().unwrap_or(0) >= 1 && i["status"] != "delivered")
    })
    .await;
    // Then it is reachable but resets every request mid-way: retried the same way.
    let attempts = |d: &serde_json::Value| -> BTreeMap<String, i64> {
        d["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        (
                            i["id"].as_str().unwrap_or_default().to_string(),
                            i["attempts"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    proxy.set(Mode::Reset);
    let before = attempts(
        &http
            .get(&deliveries)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    eventually(60, "every delivery retried against the resets", || async {
        let d: serde_json::Value = match http.get(&deliveries).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => return false,
        };
        let now = attempts(&d);
        now.len() == before.len() && now.iter().all(|(id, n)| *n > before[id])
    })
    .await;
    assert!(got.lock().unwrap().is_empty());
    proxy.set(Mode::Pass);
    eventually(60, "every call's delivery arrived", || async {
        let ids: std::collections::BTreeSet<String> =
            got.lock().unwrap().iter().map(|r| r.0.clone()).collect();
        ids.len() == calls.len()
    })
    .await;
    // De-duplicated by webhook-id: one event per call, each signed with the endpoint's secret.
    let received = got.lock().unwrap().clone();
    let mut by_id: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for (id, ts, sig, body) in received {
        assert!(
            call_insights::webhooks::verify(
                &secret,
                &id,
                ts.parse().unwrap(),
                &body,
                &sig,
                Duration::from_secs(300)
            ),
            "{id} is signed"
        );
        by_id.entry(id).or_insert((ts, sig, body));
    }
    let mut delivered_calls: Vec<String> = by_id
        .values()
        .map(|(_, _, body)| {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            v["data"]["call_id"].as_str().unwrap().to_string()
        })
        .collect();
    delivered_calls.sort();
    let mut want = calls.clone();
    want.sort();
    assert_eq!(delivered_calls, want, "each call once");
    let d: serde_json::Value = http
        .get(&deliveries)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for item in d["items"].as_array().unwrap() {
        assert_eq!(item["status"], "delivered", "{item}");
        assert!(item["attempts"].as_i64().unwrap() >= 3, "{item}");
    }
    check_total_queue(&env, &published).await;
    assert!(svc_alive(&svc));
    drop(svc);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_analytics_worker_resumed_changes_nothing_and_the_webhook_fires_once() {
    use testkit::llm::FakeLlm;
    let llm = FakeLlm::start().await.unwrap();
    // Slow enough that the first worker is frozen with its request in flight.
    llm.set_latency(Duration::from_millis(1500));
    let env = common::spawn(Db::Postgres, Store::S3).await;
    let (hook_url, got) = common::hooks::receiver(vec![]).await;
    let base_url = llm.base_url();
    let mut extra: Vec<(&str, &str)> = FAST.to_vec();
    extra.extend([
        ("INSIGHTS_ANALYTICS", "llm"),
        ("INSIGHTS_LLM_BASE_URL", base_url.as_str()),
        ("INSIGHTS_LLM_API_KEY", llm.api_key()),
        ("INSIGHTS_ANALYTICS_LEASE_MS", "1000"),
        ("INSIGHTS_ANALYTICS_POLL_MS", "100"),
        ("INSIGHTS_WEBHOOK_ALLOW_PRIVATE", "true"),
    ]);
    let first = env.start_service(&extra);
    let http = reqwest::Client::new();
    let hook: serde_json::Value = http
        .post(first.url("/api/v1/webhooks"))
        .json(&serde_json::json!({"url": hook_url,
            "events": ["call.analyzed"], "tenant_id": "acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(hook["id"].is_string(), "{hook}");
    env.publish_json(&common::report("frozen-analytics", 0, true, 4))
        .await;
    let published = Published::from([("frozen-analytics".to_string(), (0, 4))]);
    eventually(
        30,
        "the first worker's LLM request is in flight",
        || async { !llm.requests().is_empty() },
    )
    .await;
    first.signal("STOP");
    let second = env.start_service(&extra);
    let completed = "SELECT status, attempts, summary, analyzed_at FROM call_analytics";
    eventually(60, "the second process analysed the call", || async {
        env.rows(completed)
            .await
            .first()
            .is_some_and(|r| r["status"] == "completed")
    })
    .await;
    eventually(30, "its webhook was delivered", || async {
        !got.lock().unwrap().is_empty()
    })
    .await;
    let before = env.rows(completed).await;
    first.signal("CONT");
    eventually(30, "the resumed worker found its claim lost", || async {
        first
            .metrics()
            .await
            .contains("call_insights_analytics_claims_lost_total 1")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.rows(completed).await,
        before,
        "its late result is fenced out"
    );
    assert_eq!(env.count("call_analytics").await, 1);
    assert_eq!(
        env.count("webhook_deliveries").await,
        1,
        "the effect happens once"
    );
    let ids: std::collections::BTreeSet<String> =
        got.lock().unwrap().iter().map(|r| r.0.clone()).collect();
    assert_eq!(ids.len(), 1, "one webhook-id");
    assert_eq!(
        llm.requests().len(),
        2,
        "one request per worker, none after the fence"
    );
    check_total_queue(&env, &published).await;
    drop((first, second));
    env.cleanup().await;
}
