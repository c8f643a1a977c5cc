//! Cross-declaration windows shared by replicas, in Redis.
//!
//! With two replicas behind a load balancer, each sees half of a buyer's
//! parcels: split consignments and address fan-in at half strength. Here
//! the windows of [`crate::features::window`] (the 24 h split window with
//! values, distinct names per delivery address and sellers per IOSS number
//! over 30 days, with the same caps) live in Redis, read and updated by one
//! Lua script per scored batch: one round trip, atomic, and the same rules
//! as the in-process window, so that two replicas fed alternately give the
//! signals one replica fed everything gives.
//!
//! Redis unreachable or slow: the call gives up at its deadline and the
//! batch is scored on the replica's own window (which every batch also
//! updates), and calls are not tried again for [`RETRY_AFTER`], so a dead
//! Redis costs one deadline a second, not one a batch.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::features::window::{
    MAX_DISTINCT, MAX_PER_BUYER, PARTY_WINDOW, SplitSignal, WINDOW, buyer_key,
};

use super::router::WindowInput;

/// After a failure, how long batches use the local window before Redis is
/// tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The default deadline of one batch's round trip.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// The default prefix of every key (two deployments can share one Redis).
pub const DEFAULT_PREFIX: &str = "parcel-risk";

const SCRIPT: &str = include_str!("shared_windows.lua");

#[derive(Debug, thiserror::Error)]
pub enum SharedStateError {
    #[error("shared state URL {url:?}: {source}")]
    Url {
        url: String,
        source: redis::RedisError,
    },
    #[error("shared state URL {url:?}: {message}")]
    Tls { url: String, message: String },
    #[error("shared state unreachable: {0}")]
    Unreachable(String),
    #[error("shared state not tried again yet (it failed less than a second ago)")]
    BackingOff,
    #[error("shared state answered something unexpected: {0}")]
    Protocol(String),
}

impl SharedStateError {
    /// A label for the failures counter.
    pub fn kind(&self) -> &'static str {
        match self {
            SharedStateError::Url { .. } | SharedStateError::Tls { .. } => "url",
            SharedStateError::Unreachable(_) => "unreachable",
            SharedStateError::BackingOff => "backing_off",
            SharedStateError::Protocol(_) => "protocol",
        }
    }
}

/// TLS to Redis beyond the `rediss://` URL.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// PEM certificate(s) of the authority the server's certificate must
    /// chain to; `None`: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// What this process presents when Redis asks clients for a certificate.
    pub client: Option<ClientCertificate>,
}

/// A client certificate chain and its private key, both PEM.
#[derive(Clone)]
pub struct ClientCertificate {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl RedisTls {
    /// What the redis crate needs for `url`, or `None` when nothing beyond
    /// the URL is given; either certificate is refused with a plain
    /// `redis://` URL.
    fn certificates(self, url: &str) -> Result<Option<redis::TlsCertificates>, SharedStateError> {
        match self {
            RedisTls {
                ca_pem: None,
                client: None,
            } => Ok(None),
            _ if !url.starts_with("rediss:") => {
                let given = if self.client.is_some() {
                    "a client certificate"
                } else {
                    "a CA certificate"
                };
                Err(tls_error(
                    url,
                    format!("{given} is given, so the URL must be rediss:// (TLS)"),
                ))
            }
            RedisTls { ca_pem, client } => Ok(Some(redis::TlsCertificates {
                client_tls: client.map(|c| redis::ClientTlsConfig {
                    client_cert: c.cert_pem,
                    client_key: c.key_pem,
                }),
                root_cert: ca_pem,
            })),
        }
    }
}

fn tls_error(url: &str, message: String) -> SharedStateError {
    SharedStateError::Tls {
        url: without_password(url),
        message,
    }
}

impl std::fmt::Debug for RedisTls {
    // The private key stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("private_ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// One Redis (a primary, or the address a failover setup gives it), or
/// a Redis Cluster reached through seed nodes.
enum Backend {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

enum Connection {
    Single(redis::Connection),
    // Boxed: it is three times the size of a single connection.
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Connection {
    fn commands(&mut self) -> &mut dyn redis::ConnectionLike {
        match self {
            Connection::Single(c) => c,
            Connection::Cluster(c) => c.as_mut(),
        }
    }
}

/// The connection and when to try again after a failure.
struct Link {
    connection: Option<Connection>,
    retry_at: Option<Instant>,
}

/// The windows in one Redis or one Redis Cluster (see docs/deployment.md).
/// Every key carries the prefix as a hash tag (`{prefix}:…`), so that on a
/// cluster a batch's keys share one slot and its script runs on one node.
pub struct SharedWindows {
    backend: Backend,
    /// The URL without its password, for logs.
    display: String,
    prefix: String,
    timeout: Duration,
    script: redis::Script,
    link: Mutex<Link>,
    up: AtomicBool,
}

impl std::fmt::Debug for SharedWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWindows")
            .field("url", &self.display)
            .field("cluster", &matches!(self.backend, Backend::Cluster(_)))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("up", &self.is_up())
            .finish()
    }
}

impl SharedWindows {
    /// Checks the URL (`redis://[:password@]host:port[/db]`, or
    /// `rediss://` for TLS, verified against the system's roots). Does not
    /// connect: a Redis that is down at start is tried with the first
    /// batch, and scoring goes on locally until it answers.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, SharedStateError> {
        Self::with_ca(url, prefix, timeout, None)
    }

    /// As [`SharedWindows::new`]; `ca_pem` (PEM) is the certificate
    /// authority a `rediss://` server's certificate must chain to, instead
    /// of the system's roots (a private CA).
    pub fn with_ca(
        url: &str,
        prefix: &str,
        timeout: Duration,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<Self, SharedStateError> {
        let tls = RedisTls {
            ca_pem,
            client: None,
        };
        Self::with_tls(url, prefix, timeout, tls)
    }

    /// As [`SharedWindows::new`], with what TLS needs beyond the URL: a
    /// private CA, and the certificate this process presents to a Redis
    /// that asks its clients for one (`tls-auth-clients yes`). Either is
    /// refused with a plain `redis://` URL, as are unreadable PEM files.
    pub fn with_tls(
        url: &str,
        prefix: &str,
        timeout: Duration,
        tls: RedisTls,
    ) -> Result<Self, SharedStateError> {
        let url_error = |source| SharedStateError::Url {
            url: without_password(url),
            source,
        };
        let client = match tls.certificates(url)? {
            None => redis::Client::open(url).map_err(url_error)?,
            Some(certificates) => redis::Client::build_with_tls(url, certificates)
                // The redis crate reads the PEM here: a bad file is named now,
                // not at the first batch.
                .map_err(|e| tls_error(url, e.to_string()))?,
        };
        Ok(Self::over(
            Backend::Single(client),
            without_password(url),
            prefix,
            timeout,
        ))
    }

    /// As [`SharedWindows::with_tls`], on a Redis Cluster: `nodes` names
    /// one or more of its nodes, comma-separated (`redis://[:PASSWORD@]HOST:PORT`
    /// each, or `rediss://` for TLS); the client learns the others from them.
    /// A batch's keys share one hash slot, so each batch is still one script
    /// call, on the node that holds that slot.
    pub fn cluster(
        nodes: &str,
        prefix: &str,
        timeout: Duration,
        tls: RedisTls,
    ) -> Result<Self, SharedStateError> {
        let seeds: Vec<&str> = nodes
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        let shown = seeds
            .iter()
            .map(|n| without_password(n))
            .collect::<Vec<_>>()
            .join(",");
        let url_error = |source| SharedStateError::Url {
            url: shown.clone(),
            source,
        };
        let tls_error = |message: String| SharedStateError::Tls {
            url: shown.clone(),
            message,
        };
        let Some(&first) = seeds.first() else {
            return Err(url_error(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "no cluster node is given",
            ))));
        };
        if seeds
            .iter()
            .any(|n| n.starts_with("rediss:") != first.starts_with("rediss:"))
        {
            return Err(tls_error(
                "every node must use TLS (rediss://) or none".into(),
            ));
        }
        let timeout = timeout.max(Duration::from_millis(1));
        let mut builder = redis::cluster::ClusterClientBuilder::new(seeds)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            // A batch that fails falls back to local windows at once;
            // retrying it would hold the stream past its deadline.
            .retries(0);
        if let Some(certificates) = tls.certificates(first)? {
            builder = builder.certs(certificates);
        }
        // Beyond the URLs, only the certificates can be wrong here.
        let client = builder.build().map_err(|e| {
            if e.kind() == redis::ErrorKind::InvalidClientConfig {
                url_error(e)
            } else {
                tls_error(e.to_string())
            }
        })?;
        Ok(Self::over(Backend::Cluster(client), shown, prefix, timeout))
    }

    /// `display`: the URL(s), passwords removed.
    fn over(backend: Backend, display: String, prefix: &str, timeout: Duration) -> Self {
        Self {
            backend,
            display,
            prefix: prefix.to_owned(),
            timeout: timeout.max(Duration::from_millis(1)),
            script: redis::Script::new(SCRIPT),
            link: Mutex::new(Link {
                connection: None,
                retry_at: None,
            }),
            up: AtomicBool::new(false),
        }
    }

    /// The URL, password removed.
    pub fn url(&self) -> &str {
        &self.display
    }

    /// Whether the last batch was answered by Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Reads and updates the shared windows for a batch, in order: what
    /// [`crate::features::window::SplitWindow::observe_parcel`] gives for
    /// each, had one window seen every replica's traffic.
    ///
    /// With `day` (the start of the calendar day the batch counts in, Unix
    /// seconds), the batch is also added to the fleet's traffic of that
    /// day, and [`SharedBatch::fleet_today`] says how much it is now.
    pub fn observe_batch(
        &self,
        inputs: &[WindowInput],
        day: Option<i64>,
    ) -> Result<SharedBatch, SharedStateError> {
        if inputs.is_empty() {
            return Ok(SharedBatch::default());
        }
        let mut link = self
            .link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if link.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(SharedStateError::BackingOff);
        }
        let outcome = self.call(&mut link, inputs, day);
        self.settle(&mut link, outcome.as_ref().err());
        outcome
    }

    /// Whether Redis answers a PING now (within the deadline; not while
    /// backing off after a failure). Health asks it once a second, so a
    /// Redis that comes back is seen without waiting for traffic.
    pub fn probe(&self) -> bool {
        let mut link = self
            .link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if link.retry_at.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        let answered = self.connect(&mut link).and_then(|connection| {
            redis::cmd("PING")
                .query::<String>(connection)
                .map_err(|e| SharedStateError::Unreachable(e.to_string()))
        });
        self.settle(&mut link, answered.as_ref().err());
        answered.is_ok()
    }

    /// Keeps the connection after a success; after a failure drops it (the
    /// next try reconnects) and waits [`RETRY_AFTER`] before trying again.
    fn settle(&self, link: &mut Link, failure: Option<&SharedStateError>) {
        match failure {
            None => {
                link.retry_at = None;
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(url = %self.display, "shared state reached: windows are shared");
                }
            }
            Some(e) => {
                link.connection = None;
                link.retry_at = Some(Instant::now() + RETRY_AFTER);
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(url = %self.display, error = %e, "shared state lost: scoring on this replica's windows until it answers");
                }
            }
        }
    }

    fn connect<'a>(
        &self,
        link: &'a mut Link,
    ) -> Result<&'a mut dyn redis::ConnectionLike, SharedStateError> {
        let unreachable = |e: redis::RedisError| SharedStateError::Unreachable(e.to_string());
        if link.connection.is_none() {
            let connection = match &self.backend {
                Backend::Single(client) => {
                    let connection = client
                        .get_connection_with_timeout(self.timeout)
                        .map_err(unreachable)?;
                    connection
                        .set_read_timeout(Some(self.timeout))
                        .map_err(unreachable)?;
                    connection
                        .set_write_timeout(Some(self.timeout))
                        .map_err(unreachable)?;
                    Connection::Single(connection)
                }
                // Its deadlines were set when the client was built.
                Backend::Cluster(client) => {
                    Connection::Cluster(Box::new(client.get_connection().map_err(unreachable)?))
                }
            };
            link.connection = Some(connection);
        }
        link.connection
            .as_mut()
            .map(Connection::commands)
            .ok_or_else(|| SharedStateError::Unreachable("no connection".into()))
    }

    fn call(
        &self,
        link: &mut Link,
        inputs: &[WindowInput],
        day: Option<i64>,
    ) -> Result<SharedBatch, SharedStateError> {
        let unreachable = |e: redis::RedisError| SharedStateError::Unreachable(e.to_string());
        let connection = self.connect(link)?;
        let micros = |d: chrono::Duration| d.num_microseconds().unwrap_or(i64::MAX);
        let millis = |d: chrono::Duration| d.num_milliseconds();
        let mut invocation = self.script.prepare_invoke();
        // The prefix as a hash tag: on a cluster every key of the batch
        // lands in its slot, and the one key declared routes the call there.
        let tagged = format!("{{{}}}", self.prefix);
        invocation
            .key(format!("{tagged}:observed"))
            .arg(&tagged)
            .arg(micros(WINDOW))
            .arg(micros(PARTY_WINDOW))
            .arg(MAX_PER_BUYER)
            .arg(MAX_DISTINCT)
            // Keys outlive their window by an hour: lodging times and the
            // Redis clock may disagree a little.
            .arg(millis(WINDOW + chrono::Duration::hours(1)))
            .arg(millis(PARTY_WINDOW + chrono::Duration::hours(1)))
            .arg(day.map_or_else(String::new, |d| d.to_string()))
            .arg(inputs.len());
        for input in inputs {
            let keys = &input.keys;
            invocation
                .arg(buyer_key(keys))
                .arg(keys.address)
                .arg(keys.importer_name)
                .arg(keys.ioss.map_or_else(String::new, |k| k.to_string()))
                .arg(keys.exporter)
                .arg(keys.declaration)
                .arg(input.lodged_at.timestamp_micros())
                .arg(input.declared_cents);
        }
        let rows: Vec<Vec<String>> = invocation.invoke(connection).map_err(|e| {
            if e.is_timeout() || e.is_io_error() || e.is_connection_dropped() {
                unreachable(e)
            } else {
                SharedStateError::Protocol(e.to_string())
            }
        })?;
        let Some((fleet, rows)) = rows.split_first() else {
            return Err(SharedStateError::Protocol("an empty answer".into()));
        };
        if rows.len() != inputs.len() {
            return Err(SharedStateError::Protocol(format!(
                "{} answers for {} declarations",
                rows.len(),
                inputs.len()
            )));
        }
        let fleet_today = fleet
            .first()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| day.is_some());
        let signals = rows
            .iter()
            .zip(inputs)
            .map(|(row, input)| signal(row, input.declared_cents))
            .collect::<Result<_, _>>()?;
        Ok(SharedBatch {
            signals,
            fleet_today,
        })
    }
}

/// What the shared state says of a batch.
#[derive(Debug, Default)]
pub struct SharedBatch {
    /// Per declaration, in order.
    pub signals: Vec<SplitSignal>,
    /// Declarations the fleet has counted in the batch's day, this batch
    /// included (when a day was given).
    pub fleet_today: Option<u64>,
}

/// One declaration's answer: four counts, then the values of the counted parcels.
fn signal(row: &[String], own_cents: i64) -> Result<SplitSignal, SharedStateError> {
    let number = |i: usize| -> Result<i64, SharedStateError> {
        row.get(i)
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| SharedStateError::Protocol(format!("answer {row:?}")))
    };
    let count = |i: usize| number(i).map(|v| u32::try_from(v.max(0)).unwrap_or(u32::MAX));
    let mut combined = own_cents;
    for i in 4..row.len() {
        combined = combined.saturating_add(number(i)?);
    }
    Ok(SplitSignal {
        buyer_parcels: count(0)?,
        same_seller_parcels: count(1)?,
        combined_value_eur_cents: combined,
        address_names: count(2)?,
        ioss_sellers: count(3)?,
    })
}

/// `redis://user:secret@host` → `redis://user:***@host`.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => format!("{}***{}", &url[..scheme + 3], &url[at..]),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            without_password("redis://:s3cret@10.0.0.5:6379/2"),
            "redis://:***@10.0.0.5:6379/2"
        );
        assert_eq!(
            without_password("rediss://app:s3cret@redis:6380"),
            "rediss://app:***@redis:6380"
        );
        assert_eq!(
            without_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn answers_sum_values_saturating_and_refuse_garbage() {
        let row: Vec<String> = ["2", "1", "3", "0", "1500", &i64::MAX.to_string()]
            .map(String::from)
            .to_vec();
        let s = signal(&row, 700).unwrap();
        assert_eq!(
            (
                s.buyer_parcels,
                s.same_seller_parcels,
                s.address_names,
                s.ioss_sellers
            ),
            (2, 1, 3, 0)
        );
        assert_eq!(s.combined_value_eur_cents, i64::MAX);
        assert!(signal(&["x".into()], 0).is_err());
    }

    #[test]
    fn a_bad_url_is_refused_and_a_dead_redis_backs_off() {
        assert!(SharedWindows::new("http://nope", DEFAULT_PREFIX, DEFAULT_TIMEOUT).is_err());
        // A CA makes sense with TLS only; the message hides the password.
        let tls = SharedWindows::with_ca(
            "redis://:pw@10.0.0.1:6380",
            DEFAULT_PREFIX,
            DEFAULT_TIMEOUT,
            Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
        )
        .unwrap_err()
        .to_string();
        assert!(tls.contains("rediss://") && !tls.contains("pw"), "{tls}");
        // So does a client certificate, and one whose key is not PEM is
        // refused at start, not at the first batch.
        let client = |url: &str, key_pem: &[u8]| {
            let tls = RedisTls {
                ca_pem: None,
                client: Some(ClientCertificate {
                    cert_pem: Vec::new(),
                    key_pem: key_pem.to_vec(),
                }),
            };
            assert!(!format!("{tls:?}").contains("not a key"));
            SharedWindows::with_tls(url, DEFAULT_PREFIX, DEFAULT_TIMEOUT, tls)
                .unwrap_err()
                .to_string()
        };
        let plain = client("redis://:pw@10.0.0.1:6380", b"");
        assert!(
            plain.contains("client certificate") && !plain.contains("pw"),
            "{plain}"
        );
        let unreadable = client("rediss://:pw@10.0.0.1:6380", b"not a key");
        assert!(
            unreadable.contains("key") && !unreadable.contains("pw"),
            "{unreadable}"
        );
        assert!(
            SharedWindows::new(
                "rediss://:pw@10.0.0.1:6380",
                DEFAULT_PREFIX,
                DEFAULT_TIMEOUT
            )
            .is_ok()
        );
        // A cluster needs a node, and all its nodes speak TLS or none do.
        let cluster = |nodes: &str, tls: RedisTls| {
            SharedWindows::cluster(nodes, DEFAULT_PREFIX, DEFAULT_TIMEOUT, tls).map(|_| ())
        };
        assert!(cluster(" , ", RedisTls::default()).is_err());
        let mixed = cluster(
            "rediss://:pw@10.0.0.1:6380,redis://10.0.0.2:6379",
            RedisTls::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(mixed.contains("TLS") && !mixed.contains("pw"), "{mixed}");
        assert!(mixed.contains("10.0.0.1:6380,redis://10.0.0.2"), "{mixed}");
        let ca = RedisTls {
            ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            client: None,
        };
        assert!(cluster("redis://10.0.0.1:6379", ca).is_err());
        assert!(
            cluster(
                "redis://10.0.0.1:6379, redis://10.0.0.2:6379",
                RedisTls::default()
            )
            .is_ok()
        );
        // Nothing listens on port 1.
        let shared =
            SharedWindows::new("redis://127.0.0.1:1", DEFAULT_PREFIX, DEFAULT_TIMEOUT).unwrap();
        let input = WindowInput {
            keys: crate::features::history::PartyKeys {
                exporter: 1,
                address: 2,
                importer_name: 3,
                ioss: None,
                declarant: 4,
                declaration: 5,
            },
            declared_cents: 100,
            lodged_at: chrono::Utc::now(),
        };
        let first = shared.observe_batch(std::slice::from_ref(&input), None);
        assert!(
            matches!(first, Err(SharedStateError::Unreachable(_))),
            "{first:?}"
        );
        let second = shared.observe_batch(std::slice::from_ref(&input), None);
        assert!(
            matches!(second, Err(SharedStateError::BackingOff)),
            "{second:?}"
        );
        assert!(!shared.is_up());
    }
}
