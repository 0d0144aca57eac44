//! One reader per process: `XREAD BLOCK` on the events stream (its own connection, so the blocking
//! read never holds a shared one) into a broadcast channel that every SSE client of the process
//! subscribes to. A client subscribes first, then backfills from its `Last-Event-ID` with `XRANGE`,
//! skipping ids it has already seen; a lagging subscription re-reads its gap instead of losing it; an id
//! older than the stream's first entry answers `reset`. A client whose buffer fills is dropped.

use super::LiveEvent;
use redis::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// An event read back from the stream.
#[derive(Debug, Clone)]
pub struct StreamedEvent {
    /// Redis stream id (`<ms>-<seq>`): the SSE `id:`.
    pub id: String,
    pub kind: String,
    pub tenant_id: String,
    pub body: String,
    /// Parsed for filters.
    pub agent_id: Option<String>,
    pub call_id: Option<String>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct LiveMetrics {
    pub clients: AtomicI64,
    pub events_sent: AtomicU64,
    pub clients_dropped: AtomicU64,
    pub events_read: AtomicU64,
    /// Now minus the newest event's time, when it was read (ms).
    pub lag_ms: AtomicI64,
    pub publish_errors: AtomicU64,
    /// Events appended by the outbox sweep (left behind by a crash or a failed append).
    pub outbox_swept: AtomicU64,
}

/// `<ms>-<seq>` as a comparable pair.
pub fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Entries of an XRANGE/XREAD reply (`[[id, [k, v, …]], …]`).
fn entries(v: &Value) -> Vec<StreamedEvent> {
    entries_of(v, true)
}

/// As [`entries`]; with `fields` false only the ids (nobody listens: the bodies are not copied).
fn entries_of(v: &Value, fields: bool) -> Vec<StreamedEvent> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let id = text(pair.first()?)?;
            let mut e = StreamedEvent {
                id,
                kind: String::new(),
                tenant_id: String::new(),
                body: String::new(),
                agent_id: None,
                call_id: None,
            };
            if !fields {
                return Some(e);
            }
            let Value::Array(fields) = pair.get(1)? else {
                return None;
            };
            for kv in fields.chunks(2) {
                let (Some(k), Some(v)) = (kv.first().and_then(text), kv.get(1).and_then(text))
                else {
                    continue;
                };
                match k.as_str() {
                    "type" => e.kind = v,
                    "tenant_id" => e.tenant_id = v,
                    "body" => e.body = v,
                    _ => {}
                }
            }
            // Only the two keys clients filter on, borrowed: no tree of the whole body.
            #[derive(serde::Deserialize)]
            struct Keys<'a> {
                #[serde(borrow, default)]
                agent_id: Option<std::borrow::Cow<'a, str>>,
                #[serde(borrow, default)]
                call_id: Option<std::borrow::Cow<'a, str>>,
            }
            if let Ok(k) = serde_json::from_str::<Keys>(&e.body) {
                e.agent_id = k.agent_id.map(|s| s.into_owned());
                e.call_id = k.call_id.map(|s| s.into_owned());
            }
            Some(e)
        })
        .collect()
}

/// What a client asked to see.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// None: every tenant.
    pub tenant_id: Option<String>,
    pub agent_id: Option<String>,
    pub call_id: Option<String>,
    /// Empty: every type.
    pub types: Vec<String>,
}

impl Filter {
    pub fn matches(&self, e: &StreamedEvent) -> bool {
        self.tenant_id.as_ref().is_none_or(|t| *t == e.tenant_id)
            && self
                .agent_id
                .as_ref()
                .is_none_or(|a| e.agent_id.as_ref() == Some(a))
            && self
                .call_id
                .as_ref()
                .is_none_or(|c| e.call_id.as_ref() == Some(c))
            && (self.types.is_empty() || self.types.contains(&e.kind))
    }
}

/// What a client receives.
#[derive(Debug)]
pub enum Outgoing {
    Event(Arc<StreamedEvent>),
    /// The resume id is older than the stream keeps: re-read the active calls.
    Reset {
        last_event_id: String,
    },
}

#[derive(Debug)]
pub struct Hub {
    pub stream: String,
    redis: crate::broker::Broker,
    tx: broadcast::Sender<Arc<StreamedEvent>>,
    pub metrics: LiveMetrics,
    /// Events a client may have queued before it is dropped.
    pub client_buffer: usize,
    publisher: tokio::sync::Mutex<Option<crate::broker::Conn>>,
    /// Ingest's events, appended by a background task so the consumer never waits on them.
    queue: std::sync::OnceLock<mpsc::Sender<Vec<LiveEvent>>>,
    queued: AtomicU64,
    published: AtomicU64,
    flushed: tokio::sync::Notify,
    /// Where committed events wait until appended (`live_outbox`).
    outbox: sea_orm::DatabaseConnection,
    /// Outbox rows whose events this process has queued or is appending: the sweep leaves them.
    pending: std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>,
}

/// Events ingest may have waiting for the background publisher before new ones are dropped.
const PUBLISH_QUEUE_BATCHES: usize = 4096;

impl Hub {
    /// A hub appending to `stream`, deleting appended events from `outbox`'s `live_outbox` (the
    /// events this process publishes were written there by their commits).
    pub fn new(
        redis: crate::broker::Broker,
        stream: String,
        client_buffer: usize,
        outbox: sea_orm::DatabaseConnection,
    ) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Hub {
            stream,
            redis,
            tx,
            metrics: LiveMetrics::default(),
            client_buffer: client_buffer.max(1),
            publisher: tokio::sync::Mutex::new(None),
            queue: std::sync::OnceLock::new(),
            queued: AtomicU64::new(0),
            published: AtomicU64::new(0),
            flushed: tokio::sync::Notify::new(),
            outbox,
            pending: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// This process has the outbox row's events queued or is appending them.
    pub fn is_pending(&self, id: uuid::Uuid) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&id)
    }

    fn set_pending(&self, events: &[LiveEvent], on: bool) {
        let mut p = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for row in events.iter().filter_map(|e| e.outbox_row) {
            if on {
                p.insert(row);
            } else {
                p.remove(&row);
            }
        }
    }

    /// Hands a commit's events to the background publisher (started on first use) and returns at
    /// once: the consumer never waits on Redis for them. Order is kept (one task, FIFO).
    pub fn enqueue(self: &Arc<Self>, events: Vec<LiveEvent>) {
        if events.is_empty() {
            return;
        }
        let tx = self.queue.get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<Vec<LiveEvent>>(PUBLISH_QUEUE_BATCHES);
            let hub = self.clone();
            tokio::spawn(async move {
                while let Some(first) = rx.recv().await {
                    let mut batch = first;
                    let mut batches = 1u64;
                    while batch.len() < 2000 {
                        match rx.try_recv() {
                            Ok(more) => {
                                batch.extend(more);
                                batches += 1;
                            }
                            Err(_) => break,
                        }
                    }
                    hub.publish(&batch).await;
                    hub.published.fetch_add(batches, Relaxed);
                    hub.flushed.notify_waiters();
                }
            });
            tx
        });
        let n = events.len();
        self.set_pending(&events, true);
        match tx.try_send(events) {
            Ok(()) => {
                self.queued.fetch_add(1, Relaxed);
            }
            Err(e) => {
                let events = match e {
                    mpsc::error::TrySendError::Full(v) | mpsc::error::TrySendError::Closed(v) => v,
                };
                self.set_pending(&events, false);
                self.metrics.publish_errors.fetch_add(n as u64, Relaxed);
                tracing::warn!(
                    events = n,
                    "live publisher queue full or closed: events left in the outbox for its sweep"
                );
            }
        }
    }

    /// Waits until every event enqueued so far is appended (tests, shutdown).
    pub async fn flush(&self) {
        let target = self.queued.load(Relaxed);
        while self.published.load(Relaxed) < target {
            let notified = self.flushed.notified();
            if self.published.load(Relaxed) >= target {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }

    /// Appends committed events, then deletes their outbox rows (best effort: a failure is logged
    /// and counted, never an error for the caller; the rows stay for the outbox sweep).
    pub async fn publish(&self, events: &[LiveEvent]) {
        if events.is_empty() {
            return;
        }
        let appended = self
            .append(
                events
                    .iter()
                    .map(|e| (e.kind, e.tenant_id.as_str(), e.body())),
            )
            .await;
        match appended {
            Ok(()) => {
                let ids = super::outbox::rows_of(events);
                if !ids.is_empty()
                    && let Err(e) = super::outbox::delete(&self.outbox, &ids).await
                {
                    tracing::warn!(error = %e, rows = ids.len(), "live events appended but their outbox rows remain: the sweep appends them again (same event_id)");
                }
            }
            Err(e) => {
                self.metrics
                    .publish_errors
                    .fetch_add(events.len() as u64, Relaxed);
                tracing::warn!(error = %e, events = events.len(), "cannot publish live events; they stay in the outbox for its sweep");
            }
        }
        self.set_pending(events, false);
    }

    /// Appends `(type, tenant_id, body)` entries on the publisher's connection (opened on demand,
    /// dropped after an error).
    pub async fn append<'a>(
        &self,
        entries: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> redis::RedisResult<()> {
        let mut guard = self.publisher.lock().await;
        if guard.is_none() {
            *guard = Some(self.redis.conn().await?);
        }
        let r = match guard.as_mut() {
            Some(conn) => super::append(conn, &self.stream, entries).await,
            None => Ok(()),
        };
        if r.is_err() {
            *guard = None;
        }
        r
    }

    /// Events after `after` (exclusive), oldest first, at most `count`.
    pub async fn range_after(
        &self,
        after: &str,
        count: usize,
    ) -> redis::RedisResult<Vec<StreamedEvent>> {
        let mut conn = self.redis.conn().await?;
        let v: Value = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        Ok(entries(&v))
    }

    /// Id of the oldest event kept.
    pub async fn first_id(&self) -> redis::RedisResult<Option<String>> {
        let mut conn = self.redis.conn().await?;
        let v: Value = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        Ok(entries(&v).into_iter().next().map(|e| e.id))
    }

    /// Reads the stream until `shutdown`, feeding every subscriber of this process.
    pub async fn run_reader(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last = "$".to_string();
        let mut outage = false;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let mut conn = match self
                .redis
                .connect(crate::broker::Timeouts::new(
                    Duration::from_secs(5),
                    Duration::from_secs(5),
                ))
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    if !outage {
                        tracing::warn!(error = %e, "live event reader cannot reach Redis; retrying");
                        outage = true;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if last == "$" {
                // Start at the current end, so the first read after a reconnect misses nothing.
                last = self
                    .last_id(&mut conn)
                    .await
                    .unwrap_or_else(|| "0-0".into());
            }
            loop {
                let mut cmd = redis::cmd("XREAD");
                cmd.arg("COUNT")
                    .arg(512)
                    .arg("BLOCK")
                    .arg(1000)
                    .arg("STREAMS")
                    .arg(&self.stream)
                    .arg(&last);
                let read = cmd.query_async::<Value>(&mut conn);
                let v = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    v = read => v,
                };
                match v {
                    Ok(v) => {
                        if outage {
                            tracing::info!("live event reader reaches Redis again");
                            outage = false;
                        }
                        // With no client connected only the ids are taken (the position).
                        let listening = self.tx.receiver_count() > 0;
                        // [[stream, [entries…]]]
                        let batch = match &v {
                            Value::Array(streams) => streams
                                .first()
                                .and_then(|s| match s {
                                    Value::Array(p) => p.get(1).map(|es| entries_of(es, listening)),
                                    _ => None,
                                })
                                .unwrap_or_default(),
                            Value::Map(m) => m
                                .first()
                                .map(|(_, es)| entries_of(es, listening))
                                .unwrap_or_default(),
                            _ => Vec::new(),
                        };
                        for e in batch {
                            last = e.id.clone();
                            if let Some((ms, _)) = parse_id(&e.id) {
                                let now = chrono::Utc::now().timestamp_millis();
                                self.metrics.lag_ms.store(now - ms as i64, Relaxed);
                            }
                            self.metrics.events_read.fetch_add(1, Relaxed);
                            if listening {
                                let _ = self.tx.send(Arc::new(e));
                            }
                        }
                    }
                    Err(e) => {
                        if !outage {
                            tracing::warn!(error = %e, "live event reader lost Redis; reconnecting");
                            outage = true;
                        }
                        break;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    async fn last_id(&self, conn: &mut crate::broker::Conn) -> Option<String> {
        let v: Value = redis::cmd("XREVRANGE")
            .arg(&self.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await
            .ok()?;
        entries(&v).into_iter().next().map(|e| e.id)
    }

    /// A client's queue: subscribed now, backfilled from `last_event_id`, filtered, bounded. The
    /// receiver ends when the client falls `client_buffer` events behind (it is dropped, logged).
    pub fn client(
        self: &Arc<Self>,
        filter: Filter,
        last_event_id: Option<String>,
    ) -> mpsc::Receiver<Outgoing> {
        let (out, rx) = mpsc::channel(self.client_buffer);
        let mut sub = self.tx.subscribe();
        let hub = self.clone();
        hub.metrics.clients.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let _guard = ClientGuard(hub.clone());
            let mut seen: Option<(u64, u64)> = None;
            let send = |o: Outgoing, out: &mpsc::Sender<Outgoing>| -> Result<(), ()> {
                match out.try_send(o) {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        hub.metrics.clients_dropped.fetch_add(1, Relaxed);
                        tracing::warn!(
                            buffer = hub.client_buffer,
                            "live client is not reading; dropped"
                        );
                        Err(())
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
                }
            };
            // Backfill what the client missed, then follow the subscription.
            if let Some(last) = last_event_id
                .as_deref()
                .and_then(|l| parse_id(l).map(|p| (l.to_string(), p)))
            {
                let (last_text, last_pair) = last;
                let first = hub
                    .first_id()
                    .await
                    .ok()
                    .flatten()
                    .and_then(|f| parse_id(&f));
                if first.is_some_and(|f| f > last_pair) {
                    if send(
                        Outgoing::Reset {
                            last_event_id: last_text,
                        },
                        &out,
                    )
                    .is_err()
                    {
                        return;
                    }
                } else {
                    seen = Some(last_pair);
                    let mut cursor = last_text;
                    loop {
                        let Ok(batch) = hub.range_after(&cursor, 500).await else {
                            break;
                        };
                        let n = batch.len();
                        for e in batch {
                            cursor = e.id.clone();
                            seen = parse_id(&e.id).or(seen);
                            if filter.matches(&e)
                                && send(Outgoing::Event(Arc::new(e)), &out).is_err()
                            {
                                return;
                            }
                        }
                        if n < 500 {
                            break;
                        }
                    }
                }
            }
            loop {
                match sub.recv().await {
                    Ok(e) => {
                        let id = parse_id(&e.id);
                        if id.is_some() && seen.is_some() && id <= seen {
                            continue;
                        }
                        seen = id.or(seen);
                        if filter.matches(&e) && send(Outgoing::Event(e), &out).is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // Re-read the gap from the stream instead of losing it.
                        tracing::debug!(missed = n, "live subscription lagged; re-reading the gap");
                        let Some((ms, sq)) = seen else { continue };
                        let Ok(batch) = hub.range_after(&format!("{ms}-{sq}"), 4096).await else {
                            continue;
                        };
                        for e in batch {
                            seen = parse_id(&e.id).or(seen);
                            if filter.matches(&e)
                                && send(Outgoing::Event(Arc::new(e)), &out).is_err()
                            {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
                if out.is_closed() {
                    return;
                }
            }
        });
        rx
    }
}

struct ClientGuard(Arc<Hub>);
impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.metrics.clients.fetch_sub(1, Relaxed);
    }
}
