//! The `call-insights` command: serve (default), migrate, openapi, produce, replay.

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
            let conn = db::connect(&url, 1).await?;
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
        Command::Produce(opts) => {
            let client = redis::Client::open(cli.config.redis_url.as_str())
                .context("invalid INSIGHTS_REDIS_URL")?;
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
                produce::publish(&mut conn, &cli.config.stream, &opts, Some(&bar)).await?;
            bar.finish();
            eprintln!(
                "published {entries} entries ({} calls, {:.1} MB) to {} in {:.2} s",
                opts.calls,
                bytes as f64 / 1e6,
                cli.config.stream,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

async fn replay(config: Config, args: ReplayArgs) -> anyhow::Result<()> {
    use call_insights::analysis::replay::{ReplayOptions, ResultStatus, replay_session};
    use call_insights::stt::ProviderId;
    let providers = args
        .providers
        .iter()
        .map(|p| ProviderId::parse(p).with_context(|| format!("unknown provider {p:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let language = config.stt.language.clone();
    let app = app::App::build(config).await?;
    let options = ReplayOptions {
        providers: (!providers.is_empty()).then_some(providers),
        turns: (!args.turns.is_empty()).then_some(args.turns),
        language,
        tenant: None,
    };
    let grid = replay_session(
        &app.db,
        app.store.clone(),
        &app.stt,
        args.session_id,
        &options,
    )
    .await?;
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
