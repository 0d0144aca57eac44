//! What operators run from: the alert rules and the Grafana dashboard in `docker/` only name metrics
//! the service really exposes (a renamed metric would silently blind an alert).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use call_insights::stt::SttConfig;
use common::{Db, Store};
use std::collections::BTreeSet;
use testkit::stt::FakeProvider;

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

/// No configured secret reaches a log through `Debug`: the whole `App` (config, STT clients, analytics
/// settings and clients, signer, store) formatted with `{:?}` holds none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_configured_secret_appears_when_the_app_is_formatted() {
    use base64::Engine;
    let enc = format!(
        "k1:{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    );
    let secrets = [
        "sk-stt-secret-7f3a9c".to_string(),
        "sk-llm-secret-44e1b2".to_string(),
        "signing-secret-98d2e1".to_string(),
        "apikey-secret-5c6d7e".to_string(),
    ];
    let (stt_key, llm_key, signing, api_key) = (
        secrets[0].clone(),
        secrets[1].clone(),
        secrets[2].clone(),
        secrets[3].clone(),
    );
    let enc_cfg = enc.clone();
    let env = common::spawn_with(Db::Postgres, Store::S3, move |c| {
        c.stt.providers = vec![call_insights::stt::ProviderConfig::new(
            call_insights::stt::ProviderId::ALL[0],
            &stt_key,
            "http://127.0.0.1:9",
        )];
        c.analytics.llm.api_key = Some(llm_key.clone());
        c.analytics.encryption_key = Some(enc_cfg.clone());
        c.url_signing_key = Some(signing.clone());
        c.api_keys = format!("{api_key}=acme");
    })
    .await;
    let text = format!("{:?}", env.app);
    let enc_secret = enc.split_once(':').map(|(_, k)| k.to_string()).unwrap();
    for s in secrets
        .iter()
        .chain([&enc_secret, &env.app.config.s3_secret_key])
    {
        assert!(
            !text.contains(s.as_str()),
            "{s} appears in App's Debug output"
        );
    }
    env.cleanup().await;
}
