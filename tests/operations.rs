//! What operators run from: the alert rules and the Grafana dashboard in `docker/` only name metrics
//! the service really exposes (a renamed metric would silently blind an alert).

mod common;

use call_insights::stt::SttConfig;
use call_insights::stt::fake::FakeProvider;
use common::{Db, Store};
use std::collections::BTreeSet;

/// `call_insights_*` names in a text, without histogram suffixes.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("call_insights_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(base.to_string());
        rest = &tail[end..];
    }
    out
}

#[tokio::test]
async fn alerts_and_the_dashboard_name_only_exposed_metrics() {
    // One STT provider configured, so its gauges are exposed too.
    let fake = FakeProvider::start(call_insights::stt::ProviderId::Groq)
        .await
        .unwrap();
    let stt = SttConfig {
        providers: vec![fake.config()],
        language: None,
    };
    let env = common::spawn_with(Db::Postgres, Store::Fs, move |c| c.stt = stt).await;
    let base = env.serve_api().await;
    // A consumed report (the group's lag and pending exist once the group does) and one request
    // (so the HTTP histogram has a series).
    env.publish_json(&common::report("ops-1", 0, true, 2)).await;
    env.drain(&mut env.consumer()).await;
    reqwest::get(format!("{base}/healthz")).await.unwrap();
    let exposed = names(
        &reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker");
    for file in [
        "prometheus/alerts.yml",
        "grafana/dashboards/call-insights.json",
    ] {
        let used = names(&std::fs::read_to_string(root.join(file)).unwrap());
        assert!(!used.is_empty(), "{file} names no metric");
        let missing: Vec<&String> = used.difference(&exposed).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics /metrics does not expose: {missing:?}\nexposed: {exposed:?}"
        );
    }
    env.cleanup().await;
}
