//! Re-diagnosing sessions inside the ingest transaction: load the stored snapshot of each session
//! (everything stored, including rows a newer report no longer mentions), run the rules, replace the
//! session's issues and update its flags. Issue ids are derived from (session, position, code), so the
//! same snapshot always gives the same rows.

use super::{Diagnosis, Snapshot, Thresholds, diagnose};
use chrono::Utc;
use entity::{
    audio_segments as seg, call_sessions as cs, conversation_turns as ct, diagnosis_issues as di,
    session_events as ev,
};
use sea_orm::sea_query::{Expr, Value};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, Statement,
};
use std::collections::HashMap;
use uuid::Uuid;

/// Rows per statement, under the bind-parameter limits.
const CHUNK: usize = 1000;

fn group<T>(rows: Vec<T>, key: impl Fn(&T) -> Uuid) -> HashMap<Uuid, Vec<T>> {
    let mut out: HashMap<Uuid, Vec<T>> = HashMap::new();
    for r in rows {
        out.entry(key(&r)).or_default().push(r);
    }
    out
}

/// Diagnoses `ids` from what is stored and writes the results. Returns the diagnoses by session.
pub async fn rediagnose<C: ConnectionTrait>(
    c: &C,
    ids: &[Uuid],
    t: &Thresholds,
) -> Result<HashMap<Uuid, Diagnosis>, DbErr> {
    let mut results = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let sessions = cs::Entity::find()
            .filter(cs::Column::Id.is_in(chunk.iter().copied()))
            .all(c)
            .await?;
        let turns = ct::Entity::find()
            .filter(ct::Column::SessionId.is_in(chunk.iter().copied()))
            .order_by_asc(ct::Column::SessionId)
            .order_by_asc(ct::Column::TurnIndex)
            .all(c)
            .await?;
        let events = ev::Entity::find()
            .filter(ev::Column::SessionId.is_in(chunk.iter().copied()))
            .order_by_asc(ev::Column::SessionId)
            .order_by_asc(ev::Column::Seq)
            .all(c)
            .await?;
        let segments = seg::Entity::find()
            .filter(seg::Column::SessionId.is_in(chunk.iter().copied()))
            .order_by_asc(seg::Column::SessionId)
            .order_by_asc(seg::Column::SegmentId)
            .all(c)
            .await?;
        let (turns, events, segments) = (
            group(turns, |r| r.session_id),
            group(events, |r| r.session_id),
            group(segments, |r| r.session_id),
        );
        let empty = (Vec::new(), Vec::new(), Vec::new());
        for session in &sessions {
            let snapshot = Snapshot {
                session,
                turns: turns.get(&session.id).unwrap_or(&empty.0),
                events: events.get(&session.id).unwrap_or(&empty.1),
                segments: segments.get(&session.id).unwrap_or(&empty.2),
            };
            results.insert(session.id, diagnose(&snapshot, t));
        }
        replace_issues(c, chunk, &results).await?;
        update_flags(c, chunk, &results).await?;
    }
    Ok(results)
}

/// Replaces the stored issues of `ids` with `results` (sessions missing from `results` get none).
pub async fn replace_issues<C: ConnectionTrait>(
    c: &C,
    ids: &[Uuid],
    results: &HashMap<Uuid, Diagnosis>,
) -> Result<(), DbErr> {
    di::Entity::delete_many()
        .filter(di::Column::SessionId.is_in(ids.iter().copied()))
        .exec(c)
        .await?;
    let now = Utc::now();
    let mut rows = Vec::new();
    for id in ids {
        let Some(d) = results.get(id) else { continue };
        for (ordinal, issue) in d.issues.iter().enumerate() {
            rows.push(di::ActiveModel {
                id: Set(Uuid::new_v5(
                    id,
                    format!("{ordinal}:{}", issue.code).as_bytes(),
                )),
                session_id: Set(*id),
                ordinal: Set(ordinal as i32),
                code: Set(issue.code.to_string()),
                severity: Set(issue.severity.as_str().to_string()),
                title: Set(issue.title.clone()),
                detail: Set(issue.detail.clone()),
                turn_index: Set(issue.turn_index),
                at_ms: Set(issue.at_ms),
                evidence: Set(issue.evidence.clone()),
                created_at: Set(now),
            });
        }
    }
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<di::ActiveModel> = rows.by_ref().take(CHUNK).collect();
        di::Entity::insert_many(chunk)
            .exec_without_returning(c)
            .await?;
    }
    Ok(())
}

/// Sets `has_issues`, `has_near_miss` and `issue_summary` of `ids` from `results`.
async fn update_flags<C: ConnectionTrait>(
    c: &C,
    ids: &[Uuid],
    results: &HashMap<Uuid, Diagnosis>,
) -> Result<(), DbErr> {
    // Session flags: one statement on PostgreSQL, one small update per session on SQLite (in-process).
    if c.get_database_backend() == DbBackend::Postgres {
        let flags: Vec<serde_json::Value> = ids
            .iter()
            .filter_map(|id| {
                let d = results.get(id)?;
                Some(serde_json::json!({"id": id, "has_issues": d.has_issues, "has_near_miss": d.has_near_miss, "issue_summary": d.summary}))
            })
            .collect();
        let sql = "UPDATE call_sessions AS s SET has_issues = r.has_issues, has_near_miss = r.has_near_miss, issue_summary = r.issue_summary \
                   FROM json_to_recordset($1::json) AS r(id uuid, has_issues bool, has_near_miss bool, issue_summary text) WHERE s.id = r.id";
        let json = serde_json::Value::Array(flags).to_string();
        c.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [Value::String(Some(json))],
        ))
        .await?;
    } else {
        for id in ids {
            let Some(d) = results.get(id) else { continue };
            cs::Entity::update_many()
                .col_expr(cs::Column::HasIssues, Expr::value(d.has_issues))
                .col_expr(cs::Column::HasNearMiss, Expr::value(d.has_near_miss))
                .col_expr(cs::Column::IssueSummary, Expr::value(d.summary.clone()))
                .filter(cs::Column::Id.eq(*id))
                .exec(c)
                .await?;
        }
    }
    Ok(())
}
