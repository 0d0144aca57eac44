//! The `call-insights` command: serve (default), migrate, openapi, produce, replay, analyze,
//! analytics backfill.

use anyhow::Context;
use call_insights::{api, app, config::Config, db, produce};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "call-insights",
    version,
    about = "Turns every call a voice AI agent takes into evidence a QA engineer can act on"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and consume the session stream (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Publish synthetic session reports to the stream (an Atlas simulator).
    Produce(produce::ProduceOptions),
    /// Replay a stored session's user turns through the configured STT providers; prints the grid
    /// (turns × renditions × providers) as JSON on stdout and a summary on stderr.
    Replay(ReplayArgs),
    /// Analyse up to 50 sessions through the STT providers as one batch job (stored like the API's
    /// batch: `GET /api/v1/analysis/batch/{job_id}`), with a progress bar; prints the job as JSON.
    /// Ctrl-C cancels the job.
    Analyze(AnalyzeArgs),
    /// Post-call analytics from the command line.
    #[command(subcommand)]
    Analytics(AnalyticsCommand),
    /// Call recordings from the command line.
    #[command(subcommand)]
    Recordings(RecordingsCommand),
}

#[derive(Subcommand)]
enum RecordingsCommand {
    /// Analyse recording files here (stored, transcribed, turned into sessions like uploads through
    /// the API), with a progress bar; prints each recording's id and status.
    Import(ImportArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    /// Audio files (WAV, MP3, FLAC, Ogg/Vorbis, Ogg/Opus).
    #[arg(required = true)]
    files: Vec<std::path::PathBuf>,
    #[arg(long)]
    tenant_id: Option<String>,
    #[arg(long)]
    agent_id: Option<String>,
    /// Channel → role, comma-separated [default: customer,agent].
    #[arg(long, value_delimiter = ',')]
    channels: Vec<String>,
    /// deepgram, assemblyai, gladia, elevenlabs or openai [default: INSIGHTS_RECORDING_PROVIDER].
    #[arg(long)]
    provider: Option<String>,
    #[arg(long)]
    language: Option<String>,
}

#[derive(Subcommand)]
enum AnalyticsCommand {
    /// Queue a backfill over stored final calls and run it here with a progress bar (the job is the
    /// same rows `GET /api/v1/analytics/backfill/{job_id}` shows); prints the job as JSON. Ctrl-C
    /// cancels what has not started.
    Backfill(BackfillArgs),
}

#[derive(clap::Args)]
struct BackfillArgs {
    /// Calls that started at or after (RFC 3339).
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Calls that started before (RFC 3339).
    #[arg(long)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(long)]
    tenant_id: Option<String>,
    #[arg(long)]
    agent_id: Option<String>,
    /// Re-analyse calls that already have analytics too (default: only calls without).
    #[arg(long)]
    all: bool,
    /// Calls analysed with a schema version below this.
    #[arg(long)]
    schema_version_below: Option<u32>,
}

#[derive(clap::Args)]
struct AnalyzeArgs {
    /// Session ids, comma-separated, or a sessions filter in query-string form, e.g.
    /// `tenant_id=acme&has_issues=true&started_after=2026-11-01T00:00:00Z`.
    #[arg(long)]
    batch: String,
    /// With a filter: take at most this many of the newest matching sessions (1–50).
    #[arg(long)]
    limit: Option<u32>,
    /// Providers to use, comma-separated (default: every configured one).
    #[arg(long, value_delimiter = ',')]
    providers: Vec<String>,
    /// Language hint [default: INSIGHTS_STT_LANGUAGE].
    #[arg(long)]
    language: Option<String>,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Session id (UUID).
    session_id: uuid::Uuid,
    /// Providers to use, comma-separated (default: every configured one).
    #[arg(long, value_delimiter = ',')]
    providers: Vec<String>,
    /// User turn indexes to replay, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    turns: Vec<i64>,
}

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    init_logging(&cli.config.log_format);
    cli.config.stt = call_insights::stt::SttConfig::from_process_env()?;
    let env = |name: &str| std::env::var(name).ok();
    cli.config.analytics = call_insights::analytics::Settings::from_lookup(env)?;
    cli.config.webhooks = call_insights::webhooks::Settings::from_lookup(&env)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let application = app::Application::build(cli.config).await?;
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                app::shutdown_signal().await;
                signal.cancel();
            });
            application.run_until_stopped(shutdown).await
        }
        Command::Migrate => {
            let url = cli.config.database_url();
            let conn = db::connect(&url, cli.config.pool_settings()).await?;
            db::migrate(&conn).await?;
            tracing::info!(database = %call_insights::config::redact_url(&url), "migrations applied");
            Ok(())
        }
        Command::Openapi => {
            let doc = api::openapi()
                .to_pretty_json()
                .context("cannot render the OpenAPI document")?;
            println!("{doc}");
            Ok(())
        }
        Command::Replay(args) => replay(cli.config, args).await,
        Command::Analyze(args) => analyze(cli.config, args).await,
        Command::Analytics(AnalyticsCommand::Backfill(args)) => backfill(cli.config, args).await,
        Command::Recordings(RecordingsCommand::Import(args)) => import(cli.config, args).await,
        Command::Produce(mut opts) => {
            if !(0.0..=1.0).contains(&opts.faults) {
                anyhow::bail!(
                    "--faults must be between 0 and 1 (the share of calls with a planted fault)"
                );
            }
            opts.until = Some(chrono::Utc::now());
            let client = call_insights::broker::Broker::open(
                &cli.config.redis_url,
                cli.config.redis_cluster_urls.as_deref(),
            )
            .context("invalid INSIGHTS_REDIS_URL or INSIGHTS_REDIS_CLUSTER_URLS")?;
            let partitions = cli.config.partitions();
            let mut conn = produce::connect(&client)
                .await
                .context("cannot connect to Redis")?;
            let total = (opts.calls * (opts.partials + 1)) as u64;
            let bar = indicatif::ProgressBar::new(total).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} entries {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let started = std::time::Instant::now();
            let (entries, bytes) =
                produce::publish_partitioned(&mut conn, &partitions, &opts, Some(&bar)).await?;
            bar.finish();
            eprintln!(
                "published {entries} entries ({} calls, {:.1} MB) to {} in {:.2} s",
                opts.calls,
                bytes as f64 / 1e6,
                if partitions.count() > 1 {
                    format!("{} partitions of {}", partitions.count(), cli.config.stream)
                } else {
                    partitions.stream(0)
                },
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

async fn replay(config: Config, args: ReplayArgs) -> anyhow::Result<()> {
    use call_insights::stt::ProviderId;
    use call_insights::stt_replay::replay::{ReplayOptions, ResultStatus, replay_session};
    let providers = args
        .providers
        .iter()
        .map(|p| ProviderId::parse(p).with_context(|| format!("unknown provider {p:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let language = config.stt.language.clone();
    // Read-only: the database, the audio store and the provider clients; no migrations, signing key,
    // Redis or workers.
    let db = call_insights::db::connect(&config.database_url(), config.pool_settings()).await?;
    let store = app::build_store(&config)?;
    let stt = call_insights::stt::SttProviders::from_config(&config.stt)
        .context("cannot build the STT provider clients")?;
    let options = ReplayOptions {
        providers: (!providers.is_empty()).then_some(providers),
        turns: (!args.turns.is_empty()).then_some(args.turns),
        language,
        tenant: None,
        priority: call_insights::stt::Priority::Interactive,
        expected: None,
    };
    let grid = replay_session(&db, store, &stt, args.session_id, &options).await?;
    println!("{}", serde_json::to_string_pretty(&grid)?);
    for turn in &grid.turns {
        for r in &turn.renditions {
            let cells: Vec<String> = r
                .results
                .iter()
                .map(|c| match (c.status, &c.wer_vs_original, &c.error) {
                    (ResultStatus::Ok, Some(w), _) => format!("{} wer {:.2}", c.provider, w.wer),
                    (_, _, Some(e)) => format!("{} {:?}", c.provider, e.kind),
                    _ => c.provider.to_string(),
                })
                .collect();
            eprintln!(
                "turn {:>3} {:<13} {}",
                turn.turn_index,
                r.rendition.as_str(),
                r.missing_reason
                    .clone()
                    .unwrap_or_else(|| cells.join(" | "))
            );
        }
    }
    Ok(())
}

/// The `--batch` argument: session ids, or a sessions filter in query-string form.
fn batch_request(
    args: &AnalyzeArgs,
) -> anyhow::Result<call_insights::stt_replay::batch::BatchRequest> {
    use call_insights::stt::ProviderId;
    use call_insights::stt_replay::batch::BatchRequest;
    let providers = args
        .providers
        .iter()
        .map(|p| ProviderId::parse(p).with_context(|| format!("unknown provider {p:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let items: Vec<&str> = args
        .batch
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let ids: Option<Vec<uuid::Uuid>> = items
        .iter()
        .map(|s| uuid::Uuid::parse_str(s).ok())
        .collect();
    let (session_ids, filter) = match ids {
        Some(ids) if !ids.is_empty() => (Some(ids), None),
        _ => {
            let filter = serde_urlencoded::from_str(&args.batch).with_context(|| {
                format!(
                    "--batch is neither session ids nor a sessions filter (tenant_id=…&has_issues=true…): {:?}",
                    args.batch
                )
            })?;
            (None, Some(filter))
        }
    };
    Ok(BatchRequest {
        session_ids,
        filter,
        limit: args.limit,
        providers: (!providers.is_empty()).then_some(providers),
        language: args.language.clone(),
    })
}

async fn analyze(config: Config, args: AnalyzeArgs) -> anyhow::Result<()> {
    use call_insights::api::auth::Scope;
    use call_insights::stt_replay::batch::{batch_view, resolve_batch};
    use call_insights::stt_replay::jobs::{self, JobKind, NewJob};
    use std::sync::Arc;
    let req = batch_request(&args)?;
    let app = Arc::new(app::App::build(config).await?);
    if app.stt.is_empty() {
        anyhow::bail!("no STT provider is configured (set INSIGHTS_<PROVIDER>_API_KEY)");
    }
    for p in req.providers.iter().flatten() {
        if app.stt.get(*p).is_none() {
            anyhow::bail!(
                "provider {p} is not configured (set INSIGHTS_{}_API_KEY)",
                p.env_prefix()
            );
        }
    }
    let sessions = resolve_batch(&app.db, &Scope::All, &req)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let new = NewJob {
        kind: JobKind::Batch,
        tenant: None,
        sessions,
        providers: req.providers.clone(),
        language: req
            .language
            .clone()
            .or_else(|| app.config.stt.language.clone()),
        filter: req
            .filter
            .as_ref()
            .and_then(|f| serde_json::to_value(f).ok()),
    };
    let (job, _) = jobs::create_job(&app.db, &new, None).await?;
    eprintln!("job {} analyses {} sessions", job.id, job.total);
    let mut runner = app.analysis_runner();
    runner.worker.concurrency = runner.worker.concurrency.max(1);
    let stop = CancellationToken::new();
    let worker = tokio::spawn(jobs::run_worker(runner.clone(), stop.clone()));
    let bar = indicatif::ProgressBar::new(job.total.max(0) as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} sessions {msg} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut interrupted = std::pin::pin!(app::shutdown_signal());
    let view = loop {
        let current = <entity::analysis_jobs::Entity as sea_orm::EntityTrait>::find_by_id(job.id)
            .one(&app.db)
            .await?
            .context("the job row vanished")?;
        let view = batch_view(&app.db, current).await?;
        bar.set_position((view.done + view.failed + view.cancelled) as u64);
        bar.set_message(format!(
            "done {} failed {} running {}",
            view.done, view.failed, view.running
        ));
        if !matches!(
            view.status,
            call_insights::stt_replay::batch::JobStatus::Running
        ) {
            break view;
        }
        tokio::select! {
            () = &mut interrupted => {
                bar.suspend(|| eprintln!("cancelling job {}", job.id));
                jobs::cancel_job(&runner, job.id).await?;
            }
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
    };
    bar.finish();
    stop.cancel();
    worker.await.context("analysis worker panicked")?;
    println!("{}", serde_json::to_string_pretty(&view)?);
    for item in view.items.iter().flatten().filter(|i| i.error.is_some()) {
        eprintln!(
            "session {} ({}): {}",
            item.session_id,
            item.call_id.as_deref().unwrap_or("?"),
            item.error.as_deref().unwrap_or_default()
        );
    }
    let status = serde_json::to_value(view.status)?;
    eprintln!(
        "job {} {}: {} done, {} failed, {} cancelled",
        view.job_id,
        status.as_str().unwrap_or("?"),
        view.done,
        view.failed,
        view.cancelled
    );
    if view.failed > 0 || view.cancelled > 0 {
        std::process::exit(1);
    }
    Ok(())
}

async fn backfill(config: Config, args: BackfillArgs) -> anyhow::Result<()> {
    use call_insights::analytics::backfill::{self, BackfillFilter};
    use call_insights::analytics::worker;
    use call_insights::api::auth::Scope;
    let app = app::App::build(config).await?;
    if !app.analytics.enabled() {
        anyhow::bail!("post-call analytics is off (INSIGHTS_ANALYTICS=off)");
    }
    let filter = BackfillFilter {
        since: args.since,
        until: args.until,
        tenant_id: args.tenant_id,
        agent_id: args.agent_id,
        only_missing: Some(!args.all),
        schema_version_below: args.schema_version_below,
    };
    let job = backfill::create(&app.db, &Scope::All, filter)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("backfill job {} queues {} calls", job.id, job.total);
    let stop = CancellationToken::new();
    let runner = tokio::spawn(worker::run_worker(
        app.analytics.clone(),
        app.db.clone(),
        format!("{}-backfill", app.config.consumer_name()),
        stop.clone(),
    ));
    let bar = indicatif::ProgressBar::new(job.total.max(0) as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} calls {msg} {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut interrupted = std::pin::pin!(app::shutdown_signal());
    let view = loop {
        let view = backfill::get(&app.db, &Scope::All, job.id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        bar.set_position((view.completed + view.skipped + view.failed + view.cancelled) as u64);
        bar.set_message(format!(
            "completed {} skipped {} failed {} running {}",
            view.completed, view.skipped, view.failed, view.running
        ));
        if view.status != "running" && view.running == 0 {
            break view;
        }
        tokio::select! {
            () = &mut interrupted => {
                bar.suspend(|| eprintln!("cancelling backfill {}", job.id));
                let _ = backfill::cancel(&app.db, &Scope::All, job.id).await;
            }
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
    };
    bar.finish();
    stop.cancel();
    runner.await.context("analytics worker panicked")?;
    println!("{}", serde_json::to_string_pretty(&view)?);
    eprintln!(
        "backfill {} {}: {} completed, {} skipped, {} failed, {} cancelled",
        view.id, view.status, view.completed, view.skipped, view.failed, view.cancelled
    );
    if view.failed > 0 || view.cancelled > 0 {
        std::process::exit(1);
    }
    Ok(())
}

async fn import(config: Config, args: ImportArgs) -> anyhow::Result<()> {
    use call_insights::recordings::{intake, spool::Spool, store};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    let app = Arc::new(app::App::build(config).await?);
    let settings = &app.recordings.settings;
    let meta = intake::Metadata {
        tenant_id: args.tenant_id.clone(),
        agent_id: args.agent_id.clone(),
        channels: (!args.channels.is_empty()).then(|| {
            args.channels
                .iter()
                .map(|c| intake::RoleName(c.clone()))
                .collect()
        }),
        provider: args.provider.clone(),
        language: args.language.clone(),
        ..Default::default()
    };
    let style = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let bar = indicatif::ProgressBar::new(args.files.len() as u64).with_style(style);
    let mut accepted = Vec::new();
    for path in &args.files {
        bar.set_message(format!("storing {}", path.display()));
        let mut file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut spool = Spool::create(&settings.spool_dir, settings.max_bytes).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            spool.write(&buf[..n]).await?;
        }
        let spooled = spool.finish().await?;
        let name = path.file_name().map(|n| n.to_string_lossy().to_string());
        let ext = intake::extension_of(None, name.as_deref());
        let a = intake::accept_upload(
            &app.recordings,
            &app.db,
            &app.store,
            None,
            &meta,
            spooled,
            name,
            Some(intake::content_type_of(&ext).to_string()),
        )
        .await
        .with_context(|| format!("{} was not accepted", path.display()))?;
        accepted.push((path.clone(), a.recording_id));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let bar = indicatif::ProgressBar::new(accepted.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} analysed {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(Arc::new(app.recording_worker()).run_until(shutdown.clone()));
    loop {
        let mut done = 0;
        let mut stages = std::collections::BTreeMap::<String, usize>::new();
        for (_, id) in &accepted {
            let r = store::load(&app.db, None, *id).await?;
            if r.work.is_none() {
                done += 1;
            } else {
                *stages.entry(r.status.to_string()).or_default() += 1;
            }
        }
        bar.set_position(done);
        bar.set_message(
            stages
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if done as usize == accepted.len() {
            break;
        }
        tokio::select! {
            _ = app::shutdown_signal() => {
                eprintln!("interrupted: the recordings not finished are queued and resume on the next import or server start");
                break;
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(300)) => {}
        }
    }
    bar.finish_and_clear();
    shutdown.cancel();
    worker.await.context("recording worker panicked")?;
    let mut failed = 0;
    for (path, id) in &accepted {
        let r = store::load(&app.db, None, *id).await?;
        if r.status == call_insights::recordings::Status::Failed {
            failed += 1;
        }
        println!(
            "{id}\t{}\t{}{}{}",
            r.status,
            path.display(),
            r.session_id
                .map(|s| format!("\tsession {s}"))
                .unwrap_or_default(),
            r.error.map(|e| format!("\t{e}")).unwrap_or_default()
        );
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} recordings failed", accepted.len());
    }
    Ok(())
}
