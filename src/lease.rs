//! The leased work queue (the analytics queue, the recording pipeline): a worker claims due rows
//! with a lease and one fencing token per claim (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a guarded
//! `UPDATE` on SQLite), renews the lease while it works, and fences every write of its run by the
//! token: a worker that was away past its lease finds another claim's token on the row and writes
//! nothing (`Ok(false)`).

use crate::db::stmt;
use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, Value};
use std::time::Duration;
use uuid::Uuid;

/// A table used as a queue: its key column and the order due rows are claimed in. The table has
/// `claimed_by`, `claim_token`, `lease_until` and `attempts` columns.
#[derive(Debug, Clone, Copy)]
pub struct Queue {
    pub table: &'static str,
    pub key: &'static str,
    pub order: &'static str,
}

/// What to claim: rows matching `due` (SQL with `?` placeholders and their `values`), and what else
/// the claim sets (`also`, e.g. `status = 'running'`) and returns.
#[derive(Debug, Clone)]
pub struct Due<'a> {
    pub sql: &'a str,
    pub values: Vec<Value>,
    pub also: &'a str,
    pub returning: &'a str,
}

fn until(lease: Duration) -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default()
}

impl Queue {
    /// Claims up to `n` due rows for `worker` with one new token and a lease of `lease`; the rows
    /// as `R` (from `due.returning`) and the token.
    pub async fn claim<R: FromQueryResult>(
        &self,
        db: &DatabaseConnection,
        worker: &str,
        lease: Duration,
        n: usize,
        due: Due<'_>,
    ) -> Result<(Uuid, Vec<R>), DbErr> {
        let token = Uuid::new_v4();
        if n == 0 {
            return Ok((token, Vec::new()));
        }
        let backend = db.get_database_backend();
        let lock = if backend == DbBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let Queue { table, key, order } = self;
        let also = if due.also.is_empty() {
            String::new()
        } else {
            format!(", {}", due.also)
        };
        // The condition again outside the subquery: on SQLite (no row locks) a second process that
        // read the same candidates claims only those still due.
        let sql = format!(
            "UPDATE {table} SET claimed_by = ?, claim_token = ?, lease_until = ?, attempts = attempts + 1{also} \
             WHERE {key} IN (SELECT {key} FROM {table} WHERE {d} ORDER BY {order} LIMIT {n}{lock}) AND ({d}) \
             RETURNING {returning}",
            d = due.sql,
            returning = due.returning,
        );
        let mut values: Vec<Value> = vec![worker.into(), token.into(), until(lease).into()];
        values.extend(due.values.iter().cloned());
        values.extend(due.values);
        let rows = R::find_by_statement(stmt(backend, &sql, values))
            .all(db)
            .await?;
        Ok((token, rows))
    }

    /// `UPDATE … SET {sets} WHERE key = ? AND claim_token = ?`: false when the claim is no longer
    /// held (another worker's token, or none).
    pub async fn fenced<C: ConnectionTrait>(
        &self,
        c: &C,
        key: Value,
        token: Uuid,
        sets: &str,
        mut values: Vec<Value>,
    ) -> Result<bool, DbErr> {
        values.extend([key, token.into()]);
        let sql = format!(
            "UPDATE {} SET {sets} WHERE {} = ? AND claim_token = ?",
            self.table, self.key
        );
        let r = c
            .execute_raw(stmt(c.get_database_backend(), &sql, values))
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Extends the claim's lease by `lease` from now; false when the claim is no longer held.
    pub async fn renew<C: ConnectionTrait>(
        &self,
        c: &C,
        key: Value,
        token: Uuid,
        lease: Duration,
    ) -> Result<bool, DbErr> {
        self.fenced(c, key, token, "lease_until = ?", vec![until(lease).into()])
            .await
    }
}
