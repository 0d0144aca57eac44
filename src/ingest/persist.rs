//! Writing merged snapshots in one transaction: multi-row upserts keyed by the contract's natural keys,
//! guarded by `report_seq` so an older report can never overwrite a newer one, even when two consumers
//! race on the same call (the session upsert row-locks the call until commit).

use super::contract::{Role, SessionReport};
use super::models::{event_model, segment_model, session_model, turn_model};
use super::pipeline::{CallSnapshot, SegmentStatus};
use super::row_cache::{Aggregates, CallRows, RowFact, TurnFact, fingerprint};
use crate::audio::AudioMetrics;
use crate::diagnosis::{Diagnosis, Snapshot, Thresholds, diagnose};
use chrono::Utc;
use entity::{
    audio_segments as seg, call_sessions as cs, conversation_turns as ct, session_events as ev,
};
use sea_orm::sea_query::{ArrayType, Expr, OnConflict, Query, Value};
use sea_orm::{
    ColumnTrait, ColumnType, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityName,
    EntityTrait, ModelTrait, QueryFilter, QueryResult, QuerySelect, Statement, TransactionTrait,
};
use std::collections::HashMap;
use uuid::Uuid;

/// An audio segment's row, measured and stored (or not, with the reason).
#[derive(Debug, Clone)]
pub struct SegmentRow {
    pub segment_id: String,
    pub segment_type: &'static str,
    pub turn_index: Option<i64>,
    pub offset_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub s3_key: Option<String>,
    pub bucket: Option<String>,
    pub source: &'static str,
    pub size_bytes: Option<i64>,
    pub metrics: Option<AudioMetrics>,
    /// Full-call recordings: level over the user's speech spans.
    pub speech_levels: Option<serde_json::Value>,
    pub status: SegmentStatus,
    pub error: Option<String>,
    pub report_seq: i64,
}

pub(super) struct Written {
    /// Per snapshot: false when a newer report of the call was committed first (nothing written).
    pub won: Vec<bool>,
    pub sessions: u64,
    pub rows: u64,
    /// Per snapshot: what the database now holds for the call (for the row cache), when won.
    pub call_rows: Vec<Option<CallRows>>,
    /// Ids of the sessions this transaction changed.
    pub session_ids: Vec<Uuid>,
    /// With live events on: per session, the turns this transaction inserted or changed.
    pub changed_turns: HashMap<Uuid, Vec<i64>>,
    /// With live events on: per session, the diagnosis issues that are new in this transaction.
    pub new_issues: HashMap<Uuid, Vec<NewIssue>>,
    /// Session id per call id of the calls this transaction won.
    pub ids: HashMap<String, Uuid>,
    /// With live events on: the diagnosis summary of each session diagnosed here.
    pub issue_summaries: HashMap<Uuid, Option<String>>,
    /// With live events on: the events this transaction produced, written to `live_outbox` in it.
    pub live_events: Vec<crate::live::LiveEvent>,
}

/// Derives a commit's live events from what it wrote (called inside the transaction, so the events
/// are committed with their facts).
pub(super) type LiveDerive<'a> = &'a (dyn Fn(&Written) -> Vec<crate::live::LiveEvent> + Sync);

/// A diagnosis issue that the stored snapshot did not have before.
#[derive(Debug, Clone)]
pub struct NewIssue {
    pub code: String,
    pub severity: &'static str,
    pub title: String,
    pub turn_index: Option<i64>,
    pub at_ms: Option<i64>,
}

/// Rows per statement, keeping every statement under PostgreSQL's 65,535 and SQLite's 32,766
/// bind-parameter limits.
const MAX_PARAMS: usize = 30_000;

/// `seq` and `is_final` of the stored report of each call that has one.
pub(super) async fn stored_seqs<'a>(
    db: &DatabaseConnection,
    call_ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, (i64, bool)>, DbErr> {
    let ids: Vec<&str> = call_ids.collect();
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let rows: Vec<(String, i64, bool)> = cs::Entity::find()
            .select_only()
            .column(cs::Column::CallId)
            .column(cs::Column::ReportSeq)
            .column(cs::Column::IsFinal)
            .filter(cs::Column::CallId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        out.extend(rows.into_iter().map(|(c, s, f)| (c, (s, f))));
    }
    Ok(out)
}

fn build_err(e: sea_orm::sea_query::error::Error) -> DbErr {
    DbErr::Custom(format!("cannot build statement: {e}"))
}

const SESSION_COLS: [cs::Column; 32] = [
    cs::Column::Id,
    cs::Column::CallId,
    cs::Column::RoomId,
    cs::Column::JobId,
    cs::Column::TenantId,
    cs::Column::AgentId,
    cs::Column::ChannelType,
    cs::Column::SttProvider,
    cs::Column::SttModel,
    cs::Column::LlmProvider,
    cs::Column::LlmModel,
    cs::Column::TtsProvider,
    cs::Column::TtsModel,
    cs::Column::VadThreshold,
    cs::Column::NoiseSuppressionEnabled,
    cs::Column::RnnoiseEnabled,
    cs::Column::StartedAt,
    cs::Column::EndedAt,
    cs::Column::DurationSeconds,
    cs::Column::CloseReason,
    cs::Column::WasTransferred,
    cs::Column::Error,
    cs::Column::TotalUserTurns,
    cs::Column::TotalAgentTurns,
    cs::Column::AvgE2eLatencyMs,
    cs::Column::ReportSeq,
    cs::Column::IsFinal,
    cs::Column::HasNearMiss,
    cs::Column::HasIssues,
    cs::Column::IssueSummary,
    cs::Column::CreatedAt,
    cs::Column::UpdatedAt,
];

/// Columns a newer report does not replace besides `call_id`.
const SESSION_KEEP_COLS: [cs::Column; 2] = [cs::Column::Id, cs::Column::CreatedAt];

/// The values of `cols` in a model, in order: the model is the one description of a row.
fn row_of<M: ModelTrait>(m: &M, cols: &[<M::Entity as EntityTrait>::Column]) -> Vec<Value> {
    cols.iter().map(|c| m.get(*c)).collect()
}

/// A session row. `diagnosis` is the in-memory diagnosis when there is one (otherwise the flags are
/// set after the stored snapshot is diagnosed).
fn session_values(
    r: &SessionReport,
    now: chrono::DateTime<Utc>,
    agg: Aggregates,
    diagnosis: Option<&Diagnosis>,
) -> Vec<Value> {
    let mut m = session_model(r);
    m.id = Uuid::new_v4();
    m.total_user_turns = agg.user_turns;
    m.total_agent_turns = agg.agent_turns;
    m.avg_e2e_latency_ms = agg.avg_e2e_latency_ms;
    m.has_near_miss = agg.has_near_miss || diagnosis.is_some_and(|d| d.has_near_miss);
    m.has_issues = diagnosis.is_some_and(|d| d.has_issues);
    m.issue_summary = diagnosis.and_then(|d| d.summary.clone());
    (m.created_at, m.updated_at) = (now, now);
    row_of(&m, &SESSION_COLS)
}

const TURN_COLS: [ct::Column; 15] = [
    ct::Column::SessionId,
    ct::Column::TurnIndex,
    ct::Column::Role,
    ct::Column::Content,
    ct::Column::StartMs,
    ct::Column::EndMs,
    ct::Column::Interrupted,
    ct::Column::SttConfidence,
    ct::Column::TranscriptionDelayMs,
    ct::Column::EndOfTurnDelayMs,
    ct::Column::LlmTtftMs,
    ct::Column::TtsTtfbMs,
    ct::Column::E2eLatencyMs,
    ct::Column::ToolCalls,
    ct::Column::ReportSeq,
];

const EVENT_COLS: [ev::Column; 7] = [
    ev::Column::SessionId,
    ev::Column::Seq,
    ev::Column::EventType,
    ev::Column::AtMs,
    ev::Column::TurnIndex,
    ev::Column::Data,
    ev::Column::ReportSeq,
];

const SEGMENT_COLS: [seg::Column; 24] = [
    seg::Column::SessionId,
    seg::Column::SegmentId,
    seg::Column::SegmentType,
    seg::Column::TurnIndex,
    seg::Column::OffsetMs,
    seg::Column::DurationMs,
    seg::Column::S3Key,
    seg::Column::Bucket,
    seg::Column::Source,
    seg::Column::SizeBytes,
    seg::Column::SampleRate,
    seg::Column::Channels,
    seg::Column::BitsPerSample,
    seg::Column::DecodedDurationMs,
    seg::Column::RmsMean,
    seg::Column::RmsPeak,
    seg::Column::SnrEstimate,
    seg::Column::PeakDbfs,
    seg::Column::ClippedRatio,
    seg::Column::ClipRuns,
    seg::Column::SpeechLevels,
    seg::Column::Status,
    seg::Column::Error,
    seg::Column::ReportSeq,
];

/// Guarded upserts of `rows` (values in `cols` order). PostgreSQL receives each chunk as one binary
/// array per column expanded by `unnest`: one statement text per table, prepared once and cached,
/// instead of a new multi-thousand-parameter VALUES statement per batch. SQLite gets multi-row VALUES
/// under its bind-parameter limit. Returns the rows affected and the `returning` columns' rows.
/// `fresh` (PostgreSQL): every row belongs to a session this transaction inserted, so none can
/// exist yet and a plain INSERT does (no conflict arbitration: a quarter less work per row).
#[allow(clippy::too_many_arguments)]
async fn upsert<E, C, X>(
    c: &X,
    entity: E,
    cols: &[C],
    (keys, keep): (&[C], &[C]),
    seq_col: C,
    strictly_newer: bool,
    rows: Vec<Vec<Value>>,
    returning: &[C],
    fresh: bool,
) -> Result<(u64, Vec<QueryResult>), DbErr>
where
    E: EntityName + sea_orm::sea_query::IntoIden + Copy,
    C: ColumnTrait + sea_orm::sea_query::IntoIden + Copy,
    X: ConnectionTrait,
{
    let fixed = |col: &C| keys.iter().chain(keep).any(|k| k.as_str() == col.as_str());
    let update: Vec<C> = cols.iter().copied().filter(|col| !fixed(col)).collect();
    let mut affected = 0u64;
    let mut returned = Vec::new();
    if rows.is_empty() {
        return Ok((affected, returned));
    }
    if c.get_database_backend() == DbBackend::Postgres {
        let sql = pg_upsert_sql(
            entity.table_name(),
            cols,
            keys,
            &update,
            seq_col,
            strictly_newer,
            returning,
            fresh,
        );
        let types: Vec<ArrayType> = cols
            .iter()
            .map(|c| crate::db::array_type(c.def().get_column_type()))
            .collect();
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let stmt = Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql.as_str(),
                crate::db::array_columns(&types, rows.by_ref().take(5000))?,
            );
            if returning.is_empty() {
                affected += c.execute_raw(stmt).await?.rows_affected();
            } else {
                let rows = c.query_all_raw(stmt).await?;
                affected += rows.len() as u64;
                returned.extend(rows);
            }
        }
        return Ok((affected, returned));
    }
    let per_stmt = (MAX_PARAMS / cols.len()).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut q = Query::insert();
        q.into_table(entity).columns(cols.iter().copied());
        for row in rows.by_ref().take(per_stmt) {
            q.values(row.into_iter().map(Expr::val))
                .map_err(build_err)?;
        }
        let guard = guard_sql(entity.table_name(), &update, seq_col, strictly_newer);
        q.on_conflict(
            OnConflict::columns(keys.iter().copied())
                .update_columns(update.iter().copied())
                .action_and_where(Expr::cust(guard))
                .to_owned(),
        );
        if returning.is_empty() {
            affected += c.execute(&q).await?.rows_affected();
        } else {
            q.returning(Query::returning().columns(returning.iter().copied()));
            let rows = c.query_all(&q).await?;
            affected += rows.len() as u64;
            returned.extend(rows);
        }
    }
    Ok((affected, returned))
}

/// A children table's rows: `[of sessions stored before, of sessions this transaction inserted]`,
/// the first through the guarded upsert, the second as plain inserts. Returns the rows written and
/// the `returning` columns' rows.
async fn write_children<E, C, X>(
    c: &X,
    entity: E,
    cols: &[C],
    keys: &[C],
    seq_col: C,
    rows: [Vec<Vec<Value>>; 2],
    returning: &[C],
) -> Result<(u64, Vec<QueryResult>), DbErr>
where
    E: EntityName + sea_orm::sea_query::IntoIden + Copy,
    C: ColumnTrait + sea_orm::sea_query::IntoIden + Copy,
    X: ConnectionTrait,
{
    let mut out = (0, Vec::new());
    for (rows, fresh) in rows.into_iter().zip([false, true]) {
        let (n, r) = upsert(
            c,
            entity,
            cols,
            (keys, &[]),
            seq_col,
            false,
            rows,
            returning,
            fresh,
        )
        .await?;
        out.0 += n;
        out.1.extend(r);
    }
    Ok(out)
}

fn pg_type(t: &ColumnType) -> &'static str {
    match t {
        ColumnType::Uuid => "uuid",
        ColumnType::BigInteger => "int8",
        ColumnType::Integer => "int4",
        ColumnType::Double => "float8",
        ColumnType::Boolean => "bool",
        ColumnType::TimestampWithTimeZone => "timestamptz",
        ColumnType::Json | ColumnType::JsonBinary => "jsonb",
        _ => "text",
    }
}

#[allow(clippy::too_many_arguments)]
fn pg_upsert_sql<C: ColumnTrait>(
    table: &str,
    cols: &[C],
    keys: &[C],
    update: &[C],
    seq_col: C,
    strictly_newer: bool,
    returning: &[C],
    fresh: bool,
) -> String {
    let list = |cs: &[C]| {
        cs.iter()
            .map(|c| format!("\"{}\"", c.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let arrays = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}[]", i + 1, pg_type(c.def().get_column_type())))
        .collect::<Vec<_>>()
        .join(", ");
    let set = update
        .iter()
        .map(|c| format!("\"{0}\" = EXCLUDED.\"{0}\"", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let guard = guard_sql(table, update, seq_col, strictly_newer);
    // The session upsert (strictly newer) also says whether it inserted the row (`xmax = 0`: no
    // earlier version was locked or replaced): "first report of the call" decided by the write itself.
    let ret = match (returning.is_empty(), strictly_newer) {
        (true, _) => String::new(),
        (false, false) => format!(" RETURNING {}", list(returning)),
        (false, true) => format!(" RETURNING {}, (xmax = 0) AS inserted", list(returning)),
    };
    let conflict = if fresh {
        String::new()
    } else {
        format!(
            " ON CONFLICT ({}) DO UPDATE SET {set} WHERE {guard}",
            list(keys)
        )
    };
    format!(
        "INSERT INTO \"{table}\" ({cols}) SELECT {cols} FROM unnest({arrays}) AS r({cols}){conflict}{ret}",
        cols = list(cols),
    )
}

/// The conflict action's WHERE: sessions take a strictly newer report; a child row takes a report at
/// least as new, and only when its content changed (an unchanged row is not rewritten: no new tuple,
/// no index churn, and its report_seq stays that of the report that last changed it). The same SQL
/// runs on PostgreSQL and SQLite (IS DISTINCT FROM needs SQLite 3.39; the bundled one is newer).
fn guard_sql<C: ColumnTrait>(
    table: &str,
    update: &[C],
    seq_col: C,
    strictly_newer: bool,
) -> String {
    let seq = seq_col.as_str();
    if strictly_newer {
        return format!("\"{table}\".\"{seq}\" < excluded.\"{seq}\"");
    }
    let content: Vec<&C> = update.iter().filter(|c| c.as_str() != seq).collect();
    let side = |prefix: &str| {
        content
            .iter()
            .map(|c| format!("{prefix}\"{}\"", c.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "\"{table}\".\"{seq}\" <= excluded.\"{seq}\" AND ({}) IS DISTINCT FROM ({})",
        side(&format!("\"{table}\".")),
        side("excluded.")
    )
}

/// Child rows of a transaction, per table.
#[derive(Default)]
struct ChildTables {
    turns: Vec<Vec<Value>>,
    events: Vec<Vec<Value>>,
    segments: Vec<Vec<Value>>,
}

/// One snapshot's child rows, built before the session id is known (slot 0 is filled in later).
struct ChildRows {
    turns: Vec<Vec<Value>>,
    events: Vec<Vec<Value>>,
    segments: Vec<Vec<Value>>,
    state: CallRows,
}

/// Content fingerprint of a child row: everything but the session id (slot 0) and report_seq (last).
fn row_hash(row: &[Value]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for v in &row[1..row.len() - 1] {
        std::mem::discriminant(v).hash(&mut h);
        match v {
            Value::Bool(b) => b.hash(&mut h),
            Value::Int(i) => i.hash(&mut h),
            Value::BigInt(i) => i.hash(&mut h),
            Value::Double(d) => d.map(f64::to_bits).hash(&mut h),
            Value::String(s) => s.hash(&mut h),
            Value::Uuid(u) => u.hash(&mut h),
            Value::ChronoDateTimeUtc(t) => t
                .map(|t| (t.timestamp(), t.timestamp_subsec_nanos()))
                .hash(&mut h),
            Value::Json(j) => j.as_deref().map(fingerprint).hash(&mut h),
            other => fingerprint(other).hash(&mut h),
        }
    }
    h.finish()
}

/// Builds a snapshot's rows and drops those `known` says the database already holds unchanged.
fn child_rows(
    snap: &CallSnapshot<'_>,
    segs: Vec<SegmentRow>,
    known: Option<&CallRows>,
) -> ChildRows {
    let mut state = known.cloned().unwrap_or_default();
    state.seq = snap.head.seq;
    state.complete = known.is_some_and(|k| k.complete);
    let mut out = ChildRows {
        turns: Vec::new(),
        events: Vec::new(),
        segments: Vec::new(),
        state,
    };
    for (t, seq) in snap.turns.values() {
        let row = row_of(&turn_model(t, *seq), &TURN_COLS);
        let fact = TurnFact {
            hash: row_hash(&row),
            user: t.role == Role::User,
            assistant: t.role == Role::Assistant,
            e2e_latency_ms: t.e2e_latency_ms,
        };
        if out.state.turns.insert(t.index, fact).map(|f| f.hash) != Some(fact.hash) {
            out.turns.push(row);
        }
    }
    for (e, seq) in snap.events.values() {
        let row = row_of(&event_model(e, *seq), &EVENT_COLS);
        let fact = RowFact {
            hash: row_hash(&row),
            near_miss: e.event_type == "near_miss",
        };
        if out.state.events.insert(e.seq, fact).map(|f| f.hash) != Some(fact.hash) {
            out.events.push(row);
        }
    }
    for s in &segs {
        let row = row_of(&segment_model(s), &SEGMENT_COLS);
        let fact = RowFact {
            hash: row_hash(&row),
            near_miss: s.segment_type == "near_miss",
        };
        if out
            .state
            .segments
            .insert(s.segment_id.clone(), fact)
            .map(|f| f.hash)
            != Some(fact.hash)
        {
            out.segments.push(row);
        }
    }
    out
}

/// Writes every snapshot in one transaction. `known[i]` is what the database is known to hold for
/// snapshot i's call (from the row cache, or empty for a new call); rows it already holds unchanged
/// are not sent, and when the knowledge is complete the aggregates are computed here instead of by
/// a query.
/// What the caller read of each call before the transaction (`stored_seqs`): the stale/duplicate
/// decisions, the row cache and "is this the call's first report / its first final" rest on it.
pub(super) type Expected = HashMap<String, (i64, bool)>;

/// Writes the snapshots in one transaction. `Ok(None)`: another replica committed a report of one of
/// these calls after `expected` was read, so what this batch derived from it may be wrong; nothing was
/// written and the caller starts over from a fresh read. On PostgreSQL the stored sessions are locked
/// first and checked against `expected`, and the upsert reports what it inserted, so each live event
/// (`call_started`, `call_ended`, …) is derived from what this transaction alone changed. SQLite
/// serialises writers, and one process consumes each call's partition.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_snapshots(
    db: &DatabaseConnection,
    expected: &Expected,
    snapshots: &[CallSnapshot<'_>],
    segment_rows: Vec<Vec<SegmentRow>>,
    known: &[Option<std::sync::Arc<CallRows>>],
    thresholds: &Thresholds,
    analytics: bool,
    live: Option<LiveDerive<'_>>,
) -> Result<Option<Written>, DbErr> {
    let mut phases = Phases::start();
    // Calls whose stored rows this batch fully knows are diagnosed from memory, before the session
    // upsert; the others after their rows are written, from the database.
    let memory: Vec<Option<MemorySnapshot>> = snapshots
        .iter()
        .zip(&segment_rows)
        .zip(known)
        .map(|((snap, segs), k)| {
            covers(snap, segs, k.as_deref()).then(|| MemorySnapshot::new(snap, segs))
        })
        .collect();
    let diagnoses: Vec<Option<Diagnosis>> = memory
        .iter()
        .map(|m| m.as_ref().map(|m| m.diagnose(thresholds)))
        .collect();
    let mut children: Vec<ChildRows> = snapshots
        .iter()
        .zip(segment_rows)
        .zip(known)
        .map(|((snap, segs), k)| child_rows(snap, segs, k.as_deref()))
        .collect();
    phases.mark("build_rows");

    let txn = db.begin().await?;
    let now = Utc::now();
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    if postgres && !lock_unchanged(&txn, expected, snapshots).await? {
        txn.rollback().await?;
        return Ok(None);
    }

    // 1. Sessions: the guarded upsert returns only the calls this batch is newest for.
    let mut ids: HashMap<String, Uuid> = HashMap::with_capacity(snapshots.len());
    let session_rows: Vec<Vec<Value>> = snapshots
        .iter()
        .zip(&children)
        .zip(&diagnoses)
        .map(|((snap, c), d)| {
            let agg = if c.state.complete {
                c.state.aggregates()
            } else {
                Aggregates::default()
            };
            session_values(snap.head, now, agg, d.as_ref())
        })
        .collect();
    let (_, returned) = upsert(
        &txn,
        cs::Entity,
        &SESSION_COLS,
        (&[cs::Column::CallId], &SESSION_KEEP_COLS),
        cs::Column::ReportSeq,
        true,
        session_rows,
        &[cs::Column::Id, cs::Column::CallId],
        false,
    )
    .await?;
    // Sessions this transaction inserted: their id is new, so none of their children exist yet.
    let mut fresh: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
    for row in returned {
        let id: Uuid = row.try_get("", "id")?;
        let call_id: String = row.try_get("", "call_id")?;
        if postgres {
            let inserted: bool = row.try_get("", "inserted")?;
            if !expected.contains_key(&call_id) && !inserted {
                // Absent when read, yet another transaction inserted it before this upsert: its
                // report was the call's first, not ours.
                txn.rollback().await?;
                return Ok(None);
            }
            if inserted {
                fresh.insert(id);
            }
        }
        ids.insert(call_id, id);
    }
    phases.mark("sessions");
    let won: Vec<bool> = snapshots
        .iter()
        .map(|s| ids.contains_key(&s.head.call_id))
        .collect();
    let mut rows_written = ids.len() as u64;

    // 2. Children of the calls we won: plain inserts for the sessions this transaction created,
    //    guarded upserts for the others.
    let mut rows = [ChildTables::default(), ChildTables::default()];
    let mut needs_aggregates = Vec::new();
    for ((snap, c), &w) in snapshots.iter().zip(&mut children).zip(&won) {
        if !w {
            continue;
        }
        let sid = ids[&snap.head.call_id];
        let to = &mut rows[usize::from(fresh.contains(&sid))];
        for mut row in c
            .turns
            .drain(..)
            .chain(c.events.drain(..))
            .chain(c.segments.drain(..))
        {
            row[0] = sid.into();
            match row.len() {
                n if n == TURN_COLS.len() => to.turns.push(row),
                n if n == EVENT_COLS.len() => to.events.push(row),
                _ => to.segments.push(row),
            }
        }
        if !c.state.complete {
            needs_aggregates.push(sid);
        }
    }
    let turn_returning: &[ct::Column] = if live.is_some() {
        &[ct::Column::SessionId, ct::Column::TurnIndex]
    } else {
        &[]
    };
    let [stored, new] = rows;
    let (n, returned_turns) = write_children(
        &txn,
        ct::Entity,
        &TURN_COLS,
        &[ct::Column::SessionId, ct::Column::TurnIndex],
        ct::Column::ReportSeq,
        [stored.turns, new.turns],
        turn_returning,
    )
    .await?;
    rows_written += n;
    let mut changed_turns: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for row in returned_turns {
        let sid: Uuid = row.try_get("", "session_id")?;
        let idx: i64 = row.try_get("", "turn_index")?;
        changed_turns.entry(sid).or_default().push(idx);
    }
    phases.mark("turns");
    rows_written += write_children(
        &txn,
        ev::Entity,
        &EVENT_COLS,
        &[ev::Column::SessionId, ev::Column::Seq],
        ev::Column::ReportSeq,
        [stored.events, new.events],
        &[],
    )
    .await?
    .0;
    phases.mark("events");
    rows_written += write_children(
        &txn,
        seg::Entity,
        &SEGMENT_COLS,
        &[seg::Column::SessionId, seg::Column::SegmentId],
        seg::Column::ReportSeq,
        [stored.segments, new.segments],
        &[],
    )
    .await?
    .0;
    phases.mark("segments");

    // 3. Aggregates of calls whose stored rows are not all known here (rows a newer snapshot omits
    //    still count), computed over everything stored.
    for chunk in needs_aggregates.chunks(1000) {
        update_aggregates(&txn, chunk).await?;
    }
    phases.mark("aggregates");
    // 4. Diagnosis of the stored snapshots, in the same transaction: a session is never visible
    //    without its diagnosis.
    let mut from_memory: HashMap<Uuid, Diagnosis> = HashMap::new();
    let mut from_db: Vec<Uuid> = Vec::new();
    for ((snap, d), &w) in snapshots.iter().zip(diagnoses).zip(&won) {
        if !w {
            continue;
        }
        let sid = ids[&snap.head.call_id];
        match d {
            Some(d) => {
                from_memory.insert(sid, d);
            }
            None => from_db.push(sid),
        }
    }
    let won_ids: Vec<Uuid> = ids.values().copied().collect();
    let before = if live.is_some() {
        issue_keys(&txn, &won_ids).await?
    } else {
        Default::default()
    };
    let memory_ids: Vec<Uuid> = from_memory.keys().copied().collect();
    for chunk in memory_ids.chunks(1000) {
        crate::diagnosis::replace_issues(&txn, chunk, &from_memory).await?;
    }
    let from_db = crate::diagnosis::rediagnose(&txn, &from_db, thresholds).await?;
    let mut new_issues: HashMap<Uuid, Vec<NewIssue>> = HashMap::new();
    let mut issue_summaries: HashMap<Uuid, Option<String>> = HashMap::new();
    if live.is_some() {
        for (sid, d) in from_memory.iter().chain(from_db.iter()) {
            issue_summaries.insert(*sid, d.summary.clone());
        }
        for (sid, d) in from_memory.iter().chain(from_db.iter()) {
            let had = before.get(sid);
            for i in &d.issues {
                let key = (i.code.to_string(), i.turn_index);
                if had.is_none_or(|h| !h.contains(&key)) {
                    new_issues.entry(*sid).or_default().push(NewIssue {
                        code: i.code.to_string(),
                        severity: i.severity.as_str(),
                        title: i.title.clone(),
                        turn_index: i.turn_index,
                        at_ms: i.at_ms,
                    });
                }
            }
        }
    }
    phases.mark("diagnosis");
    // 5. Final reports are queued for post-call analytics in the same transaction: a crash at any
    //    point loses no call (the worker runs outside ingest).
    if analytics {
        let finals: Vec<(Uuid, String, i64)> = snapshots
            .iter()
            .zip(&won)
            .filter(|(s, w)| **w && s.head.is_final())
            .map(|(s, _)| (ids[&s.head.call_id], s.head.tenant_id.clone(), s.head.seq))
            .collect();
        crate::analytics::worker::enqueue(&txn, &finals).await?;
        phases.mark("analytics_queue");
    }
    let call_rows = children
        .into_iter()
        .zip(&won)
        .map(|(c, &w)| w.then_some(c.state))
        .collect();
    let mut written = Written {
        won,
        sessions: ids.len() as u64,
        rows: rows_written,
        call_rows,
        session_ids: ids.values().copied().collect(),
        changed_turns,
        new_issues,
        ids,
        issue_summaries,
        live_events: Vec::new(),
    };
    // 6. Live events, in the outbox of this transaction: committed with their facts.
    if let Some(derive) = live {
        written.live_events = derive(&written);
        phases.mark("live_derive");
        crate::live::outbox::insert(&txn, &mut written.live_events).await?;
        phases.mark("live_outbox");
    }
    txn.commit().await?;
    phases.mark("commit");
    tracing::trace!(phases = %phases, sessions = written.ids.len(), "batch written");
    Ok(Some(written))
}

/// Locks the stored sessions of the snapshots' calls (in call-id order, as the upsert takes them) and
/// tells whether they are still what `expected` says: same calls, same `seq`, same finality.
async fn lock_unchanged<C: ConnectionTrait>(
    c: &C,
    expected: &Expected,
    snapshots: &[CallSnapshot<'_>],
) -> Result<bool, DbErr> {
    let mut calls: Vec<&str> = snapshots.iter().map(|s| s.head.call_id.as_str()).collect();
    calls.sort_unstable();
    let mut found = 0usize;
    for chunk in calls.chunks(5000) {
        let json = serde_json::to_string(chunk).map_err(|e| DbErr::Custom(e.to_string()))?;
        let rows = c
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT call_id, report_seq, is_final FROM call_sessions \
                 WHERE call_id IN (SELECT json_array_elements_text($1::json)) \
                 ORDER BY call_id FOR UPDATE",
                [Value::String(Some(json))],
            ))
            .await?;
        for row in rows {
            let call_id: String = row.try_get("", "call_id")?;
            let now: (i64, bool) = (row.try_get("", "report_seq")?, row.try_get("", "is_final")?);
            if expected.get(&call_id) != Some(&now) {
                return Ok(false);
            }
            found += 1;
        }
    }
    // A call read as stored cannot vanish mid-ingest except by erasure: then start over too.
    let expected_stored = calls.iter().filter(|c| expected.contains_key(**c)).count();
    Ok(found == expected_stored)
}

/// (code, turn) of the issues stored for each session.
async fn issue_keys<C: ConnectionTrait>(
    c: &C,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, std::collections::HashSet<(String, Option<i64>)>>, DbErr> {
    use entity::diagnosis_issues as di;
    let mut out: HashMap<Uuid, std::collections::HashSet<(String, Option<i64>)>> = HashMap::new();
    for chunk in ids.chunks(1000) {
        let rows: Vec<(Uuid, String, Option<i64>)> = di::Entity::find()
            .select_only()
            .column(di::Column::SessionId)
            .column(di::Column::Code)
            .column(di::Column::TurnIndex)
            .filter(di::Column::SessionId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(c)
            .await?;
        for (sid, code, turn) in rows {
            out.entry(sid).or_default().insert((code, turn));
        }
    }
    Ok(out)
}

/// True when the snapshot alone is everything stored for the call: the row cache knows every stored
/// row (`complete`) and the snapshot mentions each of them.
fn covers(snap: &CallSnapshot<'_>, segs: &[SegmentRow], known: Option<&CallRows>) -> bool {
    let Some(k) = known.filter(|k| k.complete) else {
        return false;
    };
    k.turns.keys().all(|i| snap.turns.contains_key(i))
        && k.events.keys().all(|s| snap.events.contains_key(s))
        && k.segments
            .keys()
            .all(|id| segs.iter().any(|g| &g.segment_id == id))
}

/// A call's stored state built from the batch itself, as the rules read it.
struct MemorySnapshot {
    session: cs::Model,
    turns: Vec<ct::Model>,
    events: Vec<ev::Model>,
    segments: Vec<seg::Model>,
}

impl MemorySnapshot {
    fn new(snap: &CallSnapshot<'_>, segs: &[SegmentRow]) -> Self {
        let session = session_model(snap.head);
        let turns = snap
            .turns
            .values()
            .map(|(t, seq)| turn_model(t, *seq))
            .collect();
        let events = snap
            .events
            .values()
            .map(|(e, seq)| event_model(e, *seq))
            .collect();
        let mut segments: Vec<seg::Model> = segs.iter().map(segment_model).collect();
        segments.sort_by(|a, b| a.segment_id.cmp(&b.segment_id));
        MemorySnapshot {
            session,
            turns,
            events,
            segments,
        }
    }

    fn diagnose(&self, t: &Thresholds) -> Diagnosis {
        diagnose(
            &Snapshot {
                session: &self.session,
                turns: &self.turns,
                events: &self.events,
                segments: &self.segments,
            },
            t,
        )
    }
}

/// Per-phase durations of one batch write, for `RUST_LOG=call_insights=trace`.
struct Phases {
    last: std::time::Instant,
    out: String,
}

impl Phases {
    fn start() -> Self {
        Phases {
            last: std::time::Instant::now(),
            out: String::new(),
        }
    }

    fn mark(&mut self, name: &str) {
        let now = std::time::Instant::now();
        self.out
            .push_str(&format!("{name}={}ms ", (now - self.last).as_millis()));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.out.trim_end())
    }
}

async fn update_aggregates<C: ConnectionTrait>(c: &C, ids: &[Uuid]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let backend = c.get_database_backend();
    let placeholders: Vec<String> = (1..=ids.len())
        .map(|i| match backend {
            DbBackend::Postgres => format!("${i}"),
            _ => "?".to_string(),
        })
        .collect();
    let sql = format!(
        "UPDATE call_sessions SET \
         total_user_turns = (SELECT COUNT(*) FROM conversation_turns t WHERE t.session_id = call_sessions.id AND t.role = 'user'), \
         total_agent_turns = (SELECT COUNT(*) FROM conversation_turns t WHERE t.session_id = call_sessions.id AND t.role = 'assistant'), \
         avg_e2e_latency_ms = (SELECT AVG(t.e2e_latency_ms) FROM conversation_turns t WHERE t.session_id = call_sessions.id), \
         has_near_miss = (EXISTS (SELECT 1 FROM session_events e WHERE e.session_id = call_sessions.id AND e.event_type = 'near_miss') \
                       OR EXISTS (SELECT 1 FROM audio_segments a WHERE a.session_id = call_sessions.id AND a.segment_type = 'near_miss')) \
         WHERE id IN ({})",
        placeholders.join(", ")
    );
    let values: Vec<Value> = ids.iter().map(|&id| id.into()).collect();
    c.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}
