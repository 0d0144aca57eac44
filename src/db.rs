//! Database connection (PostgreSQL or SQLite through sea-orm) and migrations.

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{ArrayType, Value};
use sea_orm::{ColumnType, ConnectOptions, Database, DatabaseConnection, DbErr};
use std::time::Duration;

/// Pool settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// PostgreSQL's `idle_in_transaction_session_timeout` for our sessions (zero: never).
    pub idle_transaction_timeout: Duration,
}

impl PoolSettings {
    pub fn new(max_connections: u32) -> Self {
        PoolSettings {
            max_connections,
            idle_transaction_timeout: Duration::from_secs(30),
        }
    }
}

/// Connects and, for SQLite, creates the file's folder and switches to WAL (readers never block the
/// writer; commits stay durable with synchronous=FULL). On PostgreSQL a session idle inside a
/// transaction longer than `idle_transaction_timeout` is ended by the server, so a frozen process
/// cannot hold row locks that another replica waits on.
pub async fn connect(url: &str, pool: PoolSettings) -> anyhow::Result<DatabaseConnection> {
    let max_connections = pool.max_connections;
    let sqlite = url.starts_with("sqlite:");
    if sqlite
        && let Some(path) = sqlite_path(url)
        && let Some(dir) = std::path::Path::new(&path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut opts = ConnectOptions::new(url.to_string());
    opts.max_connections(if sqlite {
        max_connections.min(4)
    } else {
        max_connections
    })
    .min_connections(1)
    .connect_timeout(Duration::from_secs(10))
    .acquire_timeout(Duration::from_secs(30))
    .sqlx_logging(false);
    if !sqlite && !pool.idle_transaction_timeout.is_zero() {
        let ms = pool.idle_transaction_timeout.as_millis().to_string();
        opts.map_sqlx_postgres_opts(move |o| {
            o.options([("idle_in_transaction_session_timeout", ms.as_str())])
        });
    }
    if sqlite {
        opts.map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
        });
    }
    let db = Database::connect(opts).await.with_context(|| {
        format!(
            "cannot connect to the database {}",
            crate::text::redact_url(url)
        )
    })?;
    Ok(db)
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// Key of the advisory lock that serialises migrations across replicas ("call-insights" in ASCII).
const MIGRATION_LOCK: i64 = 0x63616c6c2d696e73;

/// Applies pending migrations. On PostgreSQL every replica first takes a session advisory lock on
/// a connection of its own, so ten replicas starting at once migrate once: the others wait, then
/// find nothing left to do. (SQLite is one file, one writer: its own lock serialises.)
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    let pool_allows_lock = db.get_database_backend() == sea_orm::DbBackend::Postgres
        && db
            .get_postgres_connection_pool()
            .options()
            .get_max_connections()
            >= 2;
    if db.get_database_backend() == sea_orm::DbBackend::Postgres && !pool_allows_lock {
        tracing::warn!("INSIGHTS_DB_MAX_CONNECTIONS < 2: migrating without the cross-replica lock");
    }
    if !pool_allows_lock {
        return Migrator::up(db, None)
            .await
            .context("database migration failed");
    }
    let lock = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .context("cannot get a connection for the migration lock")?;
    let mut lock = lock;
    sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *lock)
        .await
        .context("cannot take the migration lock")?;
    let result = Migrator::up(db, None)
        .await
        .context("database migration failed");
    let unlocked = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *lock)
        .await;
    if let Err(e) = unlocked {
        // The lock goes with the connection: close it rather than return it to the pool locked.
        tracing::warn!(error = %e, "cannot release the migration lock; closing its connection");
        let _ = lock.detach();
    }
    result
}

/// A raw statement written with `?` placeholders, numbered `$1…` for PostgreSQL. The SQL must not
/// contain `?` elsewhere (no string literals holding one).
pub fn stmt(
    backend: sea_orm::DbBackend,
    sql: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> sea_orm::Statement {
    let sql = if backend == sea_orm::DbBackend::Postgres {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_string()
    };
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}

/// The array element type PostgreSQL receives for a column (matching the `…[]` cast its statement spells).
pub fn array_type(t: &ColumnType) -> ArrayType {
    match t {
        ColumnType::Uuid => ArrayType::Uuid,
        ColumnType::BigInteger => ArrayType::BigInt,
        ColumnType::Integer => ArrayType::Int,
        ColumnType::Double => ArrayType::Double,
        ColumnType::Boolean => ArrayType::Bool,
        ColumnType::TimestampWithTimeZone => ArrayType::ChronoDateTimeUtc,
        ColumnType::Json | ColumnType::JsonBinary => ArrayType::Json,
        _ => ArrayType::String,
    }
}

/// Rows turned into one array per column, sent in PostgreSQL's binary format (no text for the
/// server to parse: `unnest` reads the arrays as they are). A value of another type than its
/// column's is an error, never a panic in the driver.
pub fn array_columns(
    types: &[ArrayType],
    rows: impl Iterator<Item = Vec<Value>>,
) -> Result<Vec<Value>, DbErr> {
    let mut cols: Vec<Vec<Value>> = types.iter().map(|_| Vec::new()).collect();
    for row in rows {
        for ((col, ty), v) in cols.iter_mut().zip(types).zip(row) {
            col.push(array_cell(ty, v)?);
        }
    }
    Ok(types
        .iter()
        .zip(cols)
        .map(|(ty, col)| Value::Array(ty.clone(), Some(Box::new(col))))
        .collect())
}

/// `v` as an element of a `ty` array. JSON `null` and non-finite doubles become SQL NULL, as they
/// did when rows travelled as JSON.
fn array_cell(ty: &ArrayType, v: Value) -> Result<Value, DbErr> {
    Ok(match (ty, v) {
        (ArrayType::Uuid, v @ Value::Uuid(_))
        | (ArrayType::BigInt, v @ Value::BigInt(_))
        | (ArrayType::Int, v @ Value::Int(_))
        | (ArrayType::Bool, v @ Value::Bool(_))
        | (ArrayType::ChronoDateTimeUtc, v @ Value::ChronoDateTimeUtc(_))
        | (ArrayType::String, v @ Value::String(_)) => v,
        (ArrayType::BigInt, Value::Int(i)) => Value::BigInt(i.map(i64::from)),
        (ArrayType::Double, Value::Double(d)) => Value::Double(d.filter(|d| d.is_finite())),
        (ArrayType::Json, Value::Json(j)) => Value::Json(j.filter(|j| !j.is_null())),
        (ty, v) => {
            return Err(DbErr::Custom(format!("a {ty:?} column was given {v:?}")));
        }
    })
}
