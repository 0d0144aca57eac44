//! The leased work queue behind every queue of the service (STT analysis items, the analytics queue,
//! the webhook outbox, the recording pipeline): a worker claims due rows with a lease and one fencing
//! token per claim (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a guarded `UPDATE` on SQLite), renews
//! the lease while it works, and fences every write of its run by the token — completing or handing
//! the row back clears the claim. A worker that was away past its lease finds another claim's token
//! (or none) on the row and writes nothing (`Ok(false)`).

use crate::db::stmt;
use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, Value};
use std::time::Duration;
use uuid::Uuid;

/// A table used as a queue: its key columns and the order due rows are claimed in. The table has
/// `claimed_by`, `claim_token` and `lease_until` columns.
#[derive(Debug, Clone, Copy)]
pub struct Queue {
    pub table: &'static str,
    /// The primary key's columns (one, or several for a composite key).
    pub key: &'static [&'static str],
    pub order: &'static str,
}

/// Clears a claim: what completing a row or handing it back sets besides its own columns.
pub const CLEAR_CLAIM: &str = "claim_token = NULL, claimed_by = NULL, lease_until = NULL";

/// What to claim: rows matching `due` (SQL with `?` placeholders and their `values`), what else
/// the claim sets (`also` with its `also_values`, e.g. `status = 'running', attempts = attempts + 1`)
/// and what it returns.
#[derive(Debug, Clone, Default)]
pub struct Due<'a> {
    pub sql: &'a str,
    pub values: Vec<Value>,
    pub also: &'a str,
    pub also_values: Vec<Value>,
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
        let Queue { table, order, .. } = self;
        let key = self.key.join(", ");
        let also = if due.also.is_empty() {
            String::new()
        } else {
            format!(", {}", due.also)
        };
        // The condition again outside the subquery: on SQLite (no row locks) a second process that
        // read the same candidates claims only those still due.
        let sql = format!(
            "UPDATE {table} SET claimed_by = ?, claim_token = ?, lease_until = ?{also} \
             WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {d} ORDER BY {order} LIMIT {n}{lock}) AND ({d}) \
             RETURNING {returning}",
            d = due.sql,
            returning = due.returning,
        );
        let mut values: Vec<Value> = vec![worker.into(), token.into(), until(lease).into()];
        values.extend(due.also_values);
        values.extend(due.values.iter().cloned());
        values.extend(due.values);
        let rows = R::find_by_statement(stmt(backend, &sql, values))
            .all(db)
            .await?;
        Ok((token, rows))
    }

    /// `UPDATE … SET {sets} WHERE key = ? AND claim_token = ?` (`key`: the key columns' values):
    /// false when the claim is no longer held (another worker's token, or none).
    pub async fn fenced<C: ConnectionTrait>(
        &self,
        c: &C,
        key: &[Value],
        token: Uuid,
        sets: &str,
        mut values: Vec<Value>,
    ) -> Result<bool, DbErr> {
        if key.len() != self.key.len() {
            return Err(DbErr::Custom(format!(
                "{}: {} key values for {} key columns",
                self.table,
                key.len(),
                self.key.len()
            )));
        }
        values.extend(key.iter().cloned());
        values.push(token.into());
        let by_key: Vec<String> = self.key.iter().map(|k| format!("{k} = ?")).collect();
        let sql = format!(
            "UPDATE {} SET {sets} WHERE {} AND claim_token = ?",
            self.table,
            by_key.join(" AND ")
        );
        let r = c
            .execute_raw(stmt(c.get_database_backend(), &sql, values))
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Completes the claimed row or hands it back: `sets` and the claim cleared, fenced.
    pub async fn release<C: ConnectionTrait>(
        &self,
        c: &C,
        key: &[Value],
        token: Uuid,
        sets: &str,
        values: Vec<Value>,
    ) -> Result<bool, DbErr> {
        let sets = if sets.is_empty() {
            CLEAR_CLAIM.to_string()
        } else {
            format!("{sets}, {CLEAR_CLAIM}")
        };
        self.fenced(c, key, token, &sets, values).await
    }

    /// Extends the claim's lease by `lease` from now; false when the claim is no longer held.
    pub async fn renew<C: ConnectionTrait>(
        &self,
        c: &C,
        key: &[Value],
        token: Uuid,
        lease: Duration,
    ) -> Result<bool, DbErr> {
        self.fenced(c, key, token, "lease_until = ?", vec![until(lease).into()])
            .await
    }
}
