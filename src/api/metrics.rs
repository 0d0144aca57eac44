//! `/metrics`: the Prometheus text exposition of every counter the process keeps — ingest (and each
//! partition's group lag, read from Redis at scrape time), STT providers, analytics, webhooks, live
//! events, analysis claims, HTTP request durations.

use super::AppState;
use crate::ingest::redis_reply::parse_groups;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::time::Duration;

/// Prometheus text exposition: ingest counters and batch latency, the consumer group's pending
/// entries and lag (read from Redis at scrape time), HTTP request durations by route and status.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(State(AppState(app)): State<AppState>) -> impl IntoResponse {
    let mut out = String::with_capacity(8192);
    app.metrics.render(&mut out);
    render_partitions(&app, &mut out).await;
    render_stt(&app, &mut out);
    render_analytics(&app, &mut out).await;
    render_live(&app, &mut out);
    app.http_metrics.render(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Each partition's consumer-group pending entries and lag (read from Redis at scrape time, a
/// partition whose Redis node does not answer within 1 s is left out) and this process's counters
/// per partition.
async fn render_partitions(app: &crate::app::App, out: &mut String) {
    use std::fmt::Write;
    let streams = app.config.partitions().streams();
    let groups = async {
        let mut conn = app.redis.conn().await?;
        let mut found = Vec::with_capacity(streams.len());
        for (i, stream) in streams.iter().enumerate() {
            let v = tokio::time::timeout(
                Duration::from_secs(1),
                redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(stream)
                    .query_async::<redis::Value>(&mut conn),
            )
            .await;
            if let Ok(Ok(v)) = v
                && let Some(g) = parse_groups(v)
                    .into_iter()
                    .find(|g| g.name == app.config.consumer_group)
            {
                found.push((i, g.pending, g.lag));
            }
        }
        Ok::<_, redis::RedisError>(found)
    };
    let found = match tokio::time::timeout(Duration::from_secs(3), groups).await {
        Ok(Ok(found)) => found,
        _ => Vec::new(),
    };
    for (name, help, lag) in [
        (
            "call_insights_consumer_pending",
            "Entries delivered to the group and not yet acknowledged, per partition",
            false,
        ),
        (
            "call_insights_consumer_lag",
            "Entries in the partition's stream not yet delivered to the group",
            true,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (i, pending, l) in &found {
            let v = if lag { *l } else { Some(*pending) };
            if let Some(v) = v {
                let _ = writeln!(out, "{name}{{partition=\"{i}\"}} {v}");
            }
        }
    }
    crate::metrics::PartitionMetrics::render_all(&app.partition_metrics, out);
}

/// This process's SSE clients and its events reader.
fn render_live(app: &crate::app::App, out: &mut String) {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let m = &app.live.metrics;
    for (name, kind, help, v) in [
        (
            "call_insights_live_clients",
            "gauge",
            "SSE clients connected to this process",
            m.clients.load(Relaxed),
        ),
        (
            "call_insights_live_events_sent_total",
            "counter",
            "Events sent to SSE clients",
            m.events_sent.load(Relaxed) as i64,
        ),
        (
            "call_insights_live_clients_dropped_total",
            "counter",
            "SSE clients dropped because they stopped reading",
            m.clients_dropped.load(Relaxed) as i64,
        ),
        (
            "call_insights_live_events_read_total",
            "counter",
            "Events read from the events stream",
            m.events_read.load(Relaxed) as i64,
        ),
        (
            "call_insights_live_event_lag_ms",
            "gauge",
            "Age of the newest event when this process read it",
            m.lag_ms.load(Relaxed),
        ),
        (
            "call_insights_live_publish_errors_total",
            "counter",
            "Live events this process could not append at once (left in the outbox for its sweep)",
            m.publish_errors.load(Relaxed) as i64,
        ),
        (
            "call_insights_live_outbox_swept_total",
            "counter",
            "Live events appended by this process's outbox sweep (left behind by a crash or a failed append)",
            m.outbox_swept.load(Relaxed) as i64,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
}

/// Analytics results and webhook deliveries of this process, and the queues' depths (shared).
async fn render_analytics(app: &crate::app::App, out: &mut String) {
    use sea_orm::FromQueryResult;
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let m = &app.analytics.metrics;
    let _ = writeln!(
        out,
        "# HELP call_insights_analytics_results_total Analytics results stored by this process, by status\n# TYPE call_insights_analytics_results_total counter"
    );
    for (status, v) in [
        ("completed", &m.completed),
        ("skipped", &m.skipped),
        ("failed", &m.failed),
        ("unchanged", &m.unchanged),
    ] {
        let _ = writeln!(
            out,
            "call_insights_analytics_results_total{{status=\"{status}\"}} {}",
            v.load(Relaxed)
        );
    }
    for (name, help, v) in [
        (
            "call_insights_analytics_requeued_total",
            "Analytics items sent back to the queue after a transient failure",
            &m.requeued,
        ),
        (
            "call_insights_analytics_claims_lost_total",
            "Analytics runs whose result was fenced out (taken over or re-queued)",
            &m.lost,
        ),
        (
            "call_insights_analysis_claims_lost_total",
            "STT analysis runs that found their item taken over by another worker (fenced: nothing stored)",
            &app.analysis.claims_lost,
        ),
        (
            "call_insights_webhook_deliveries_total",
            "Webhook deliveries answered 2xx",
            &app.webhooks.metrics.delivered,
        ),
        (
            "call_insights_webhook_failed_attempts_total",
            "Webhook attempts that failed and will be retried",
            &app.webhooks.metrics.failed_attempts,
        ),
        (
            "call_insights_webhook_gave_up_total",
            "Webhook deliveries that failed for good (retries exhausted)",
            &app.webhooks.metrics.gave_up,
        ),
        (
            "call_insights_webhook_endpoints_disabled_total",
            "Webhook endpoints disabled by a 410 Gone",
            &app.webhooks.metrics.disabled,
        ),
        (
            "call_insights_webhook_claims_lost_total",
            "Webhook attempts whose delivery another replica took over after their lease ran out (fenced: not recorded)",
            &app.webhooks.metrics.claims_lost,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Relaxed)
        );
    }
    #[derive(FromQueryResult)]
    struct Depth {
        status: String,
        n: Option<i64>,
    }
    let backend = app.db.get_database_backend();
    let q = |sql: &str| {
        Depth::find_by_statement(sea_orm::Statement::from_string(backend, sql.to_string()))
            .all(&app.db)
    };
    let queue = tokio::time::timeout(
        Duration::from_secs(1),
        q(
            "SELECT status, CAST(COUNT(*) AS BIGINT) AS n FROM analytics_queue WHERE status IN ('queued', 'running') GROUP BY status",
        ),
    );
    let _ = writeln!(
        out,
        "# HELP call_insights_analytics_queue Analytics items waiting or running (every replica)\n# TYPE call_insights_analytics_queue gauge"
    );
    let rows = match queue.await {
        Ok(Ok(rows)) => rows,
        _ => Vec::new(),
    };
    for status in ["queued", "running"] {
        let n = rows
            .iter()
            .find(|r| r.status == status)
            .and_then(|r| r.n)
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "call_insights_analytics_queue{{status=\"{status}\"}} {n}"
        );
    }
    let pending = tokio::time::timeout(
        Duration::from_secs(1),
        q(
            "SELECT status, CAST(COUNT(*) AS BIGINT) AS n FROM webhook_deliveries WHERE status = 'pending' GROUP BY status",
        ),
    );
    if let Ok(Ok(rows)) = pending.await {
        let n = rows.first().and_then(|r| r.n).unwrap_or(0);
        let _ = writeln!(
            out,
            "# HELP call_insights_webhook_pending Webhook deliveries not yet delivered (every replica)\n# TYPE call_insights_webhook_pending gauge\ncall_insights_webhook_pending {n}"
        );
    }
}

/// Per-provider limiter state and this process's running analyses.
fn render_stt(app: &crate::app::App, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP call_insights_analysis_running Analysis items running in this process\n# TYPE call_insights_analysis_running gauge\ncall_insights_analysis_running {}",
        app.analysis.running()
    );
    if app.stt.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP call_insights_stt_slots_free Free request slots per STT provider\n# TYPE call_insights_stt_slots_free gauge"
    );
    for p in app.stt.all() {
        let _ = writeln!(
            out,
            "call_insights_stt_slots_free{{provider=\"{}\"}} {}",
            p.id(),
            p.load().0
        );
    }
    let _ = writeln!(
        out,
        "# HELP call_insights_stt_waiting Callers waiting for an STT provider slot, by priority\n# TYPE call_insights_stt_waiting gauge"
    );
    for p in app.stt.all() {
        let (_, interactive, batch) = p.load();
        let _ = writeln!(
            out,
            "call_insights_stt_waiting{{provider=\"{}\",priority=\"interactive\"}} {interactive}",
            p.id()
        );
        let _ = writeln!(
            out,
            "call_insights_stt_waiting{{provider=\"{}\",priority=\"batch\"}} {batch}",
            p.id()
        );
    }
}
