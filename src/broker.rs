//! The Redis the service talks to: one server (`INSIGHTS_REDIS_URL`) or a Redis Cluster
//! (`INSIGHTS_REDIS_CLUSTER_URLS`), behind one client (`Broker`) and one connection type (`Conn`).
//! On a cluster every command and pipeline must stay in one slot: the stream names see to that
//! (`ingest::partition`).

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::time::Duration;

/// Where Redis is.
#[derive(Clone)]
pub enum Broker {
    Single(redis::Client),
    Cluster(Box<ClusterSeeds>),
}

/// A cluster's client and its seed nodes.
#[derive(Clone)]
pub struct ClusterSeeds {
    client: ClusterClient,
    /// Seed nodes, for pub/sub (a cluster broadcasts PUBLISH to every node).
    nodes: Vec<redis::Client>,
    /// The connection `conn()` hands out, made once: a cluster connection is a handshake with
    /// every master (and a slot map), too costly per health check, scrape or SSE resume. It
    /// reconnects to a node that went away by itself.
    shared: std::sync::Arc<tokio::sync::OnceCell<ClusterConnection>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broker::Single(_) => f.write_str("Broker::Single"),
            Broker::Cluster(c) => write!(f, "Broker::Cluster({} seeds)", c.nodes.len()),
        }
    }
}

/// Timeouts of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

impl Timeouts {
    pub fn new(connect: Duration, response: Duration) -> Self {
        Timeouts { connect, response }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::new(Duration::from_secs(5), Duration::from_secs(10))
    }
}

impl Broker {
    /// A cluster when `cluster_urls` (comma-separated) is set, else the server at `url`.
    pub fn open(url: &str, cluster_urls: Option<&str>) -> RedisResult<Self> {
        match cluster_urls {
            None => Ok(Broker::Single(redis::Client::open(url)?)),
            Some(list) => {
                let urls: Vec<&str> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .collect();
                if urls.is_empty() {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "INSIGHTS_REDIS_CLUSTER_URLS names no node",
                    )));
                }
                let nodes = urls
                    .iter()
                    .map(|u| redis::Client::open(*u))
                    .collect::<RedisResult<Vec<_>>>()?;
                // Few retries: a dead master stalls only its own partitions, and the consumer's own
                // backoff takes over (rather than the client retrying 16 times per command).
                let client = ClusterClient::builder(urls)
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(1000)
                    .build()?;
                Ok(Broker::Cluster(Box::new(ClusterSeeds {
                    client,
                    nodes,
                    shared: Default::default(),
                })))
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Broker::Cluster(_))
    }

    /// A new connection with these timeouts. Blocking reads need a connection of their own (a
    /// blocked command holds up every command pipelined behind it), with a response timeout longer
    /// than the BLOCK time.
    pub async fn connect(&self, t: Timeouts) -> RedisResult<Conn> {
        match self {
            Broker::Single(c) => {
                let cfg = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(t.connect))
                    .set_response_timeout(Some(t.response));
                Ok(Conn::Single(
                    c.get_multiplexed_async_connection_with_config(&cfg).await?,
                ))
            }
            Broker::Cluster(c) => {
                let cfg = ClusterConfig::new()
                    .set_connection_timeout(t.connect)
                    .set_response_timeout(t.response);
                Ok(Conn::Cluster(
                    c.client.get_async_connection_with_config(cfg).await?,
                ))
            }
        }
    }

    /// A connection with the default timeouts (5 s to connect, 10 s per response): a new one to a
    /// single server (cheap, and it never outlives an outage), the shared one on a cluster.
    pub async fn conn(&self) -> RedisResult<Conn> {
        match self {
            Broker::Single(_) => self.connect(Timeouts::default()).await,
            Broker::Cluster(c) => {
                let t = Timeouts::default();
                let shared = c
                    .shared
                    .get_or_try_init(|| async {
                        let cfg = ClusterConfig::new()
                            .set_connection_timeout(t.connect)
                            .set_response_timeout(t.response);
                        c.client.get_async_connection_with_config(cfg).await
                    })
                    .await?;
                Ok(Conn::Cluster(shared.clone()))
            }
        }
    }

    /// A pub/sub connection: the server, or the first cluster seed that answers.
    pub async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        match self {
            Broker::Single(c) => c.get_async_pubsub().await,
            Broker::Cluster(c) => {
                let mut last = None;
                for n in &c.nodes {
                    match n.get_async_pubsub().await {
                        Ok(p) => return Ok(p),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "no cluster node to subscribe on",
                    ))
                }))
            }
        }
    }
}

/// A connection to the server or to the cluster (routing each command by its key's slot).
#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Single(_) => "Conn::Single",
            Conn::Cluster(_) => "Conn::Cluster",
        })
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
