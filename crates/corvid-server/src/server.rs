//! The server: shared state (config, store, sessions, modules, TLS) and its lifecycle —
//! bind the listeners, run until told to stop, then close every stream gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corvid_store::SqlStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admission::Admission;
use crate::auth_throttle::AuthThrottle;
use crate::c2s;
use crate::config::Config;
use crate::module::ModuleRegistry;
use crate::sessions::{QueueLimits, SessionManager};
use crate::throttle::RateLimiter;
use crate::tls::{Tls, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Store(#[from] corvid_store::StoreError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("modules: {0}")]
    Modules(#[from] crate::module::RegistryError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Server {
    pub config: Config,
    pub store: SqlStore,
    pub sessions: SessionManager,
    pub modules: ModuleRegistry,
    pub tls: Tls,
    /// Connection admission: budgets, shedding, handshake pacing (`admission.rs`).
    pub connections: Admission,
    /// Held-back authentication after repeated failures.
    pub auth_throttle: AuthThrottle,
    /// In-band registrations per address.
    pub registrations: RateLimiter,
    pub iq_tracker: crate::iq_tracker::IqTracker,
    /// What clients' entity caps mean, and each resource's (XEP-0115).
    pub caps: crate::modules::caps::CapsCache,
    /// The publish-subscribe engine behind the service and PEP (XEP-0060, XEP-0163).
    pub pubsub: crate::modules::pubsub::Engine,
    /// Sessions that may be resumed (XEP-0198), by stream management id.
    pub resumption: crate::c2s::ResumeRegistry,
    /// External components connected now (XEP-0114).
    pub components: crate::component::Components,
    /// Server-to-server federation: outgoing queues, connections, keys.
    pub s2s: Arc<crate::s2s::S2s>,
    /// Counters for `/metrics` (`metrics.rs`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// HTTP file upload's directory and signing key (XEP-0363), when the service runs.
    pub upload: Option<crate::modules::upload::files::Files>,
    /// This node's part in its cluster, when `[cluster]` makes it one.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    pub started: Instant,
    shutdown: watch::Receiver<bool>,
}

impl Server {
    /// Resolves when the server is shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }
}

/// A started server: its bound addresses and the handle to stop it.
pub struct RunningServer {
    pub server: Arc<Server>,
    /// STARTTLS c2s addresses, as bound (useful with port 0).
    pub c2s_addrs: Vec<SocketAddr>,
    /// Direct-TLS c2s addresses, as bound.
    pub tls_addrs: Vec<SocketAddr>,
    /// External component (XEP-0114) addresses, as bound; none without components.
    pub component_addrs: Vec<SocketAddr>,
    /// Server-to-server addresses, as bound; none when `[s2s] enabled` is off.
    pub s2s_addrs: Vec<SocketAddr>,
    /// Server-to-server direct TLS addresses (XEP-0368), as bound.
    pub s2s_direct_tls_addrs: Vec<SocketAddr>,
    /// Plain HTTP addresses (WebSocket, BOSH, the web services), as bound.
    pub http_addrs: Vec<SocketAddr>,
    /// HTTPS addresses, as bound.
    pub https_addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    listeners: JoinSet<()>,
}

/// Opens storage, sets up TLS, binds every listener and starts accepting.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let store = SqlStore::open(&config.storage_url()).await?;
    let tls = Tls::load_or_generate(&config)?;
    let s2s = Arc::new(crate::s2s::S2s::new(&config, &tls)?);
    let modules = ModuleRegistry::new(crate::modules::enabled(&config), &config)?;
    let upload = crate::modules::upload::active(&config)
        .then(|| crate::modules::upload::files::Files::open(&config))
        .transpose()
        .map_err(|source| StartError::DataDir {
            path: (config.upload.dir.clone()).unwrap_or_else(|| config.data_dir.join("upload")),
            source,
        })?;
    let (stop, shutdown) = watch::channel(false);
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let server = Arc::new(Server {
        sessions: SessionManager::new(
            QueueLimits {
                stanzas: config.limits.outgoing_queue,
                bytes: config.limits.outgoing_queue_bytes,
            },
            config.limits.slow_consumer,
        )
        .with_outbound_filters(modules.outbound_filters())
        .with_metrics(metrics.clone()),
        connections: Admission::new(&config.limits),
        auth_throttle: AuthThrottle::new(&config.limits),
        registrations: RateLimiter::new(
            config.limits.registrations_per_sec_per_ip,
            config.limits.registration_burst_per_ip,
            crate::c2s::MAX_REGISTRATION_WAIT,
        ),
        iq_tracker: Default::default(),
        caps: Default::default(),
        pubsub: Default::default(),
        resumption: Default::default(),
        components: Default::default(),
        s2s,
        metrics,
        upload,
        cluster: std::sync::OnceLock::new(),
        config,
        store,
        modules,
        tls,
        started: Instant::now(),
        shutdown,
    });

    if server.config.cluster.enabled() {
        let cluster = crate::cluster::Cluster::join(&server).await?;
        let _ = server.cluster.set(cluster);
    }
    let mut listeners = JoinSet::new();
    let mut c2s_addrs = Vec::new();
    let mut tls_addrs = Vec::new();
    for (addrs, direct_tls, bound) in [
        (&server.config.c2s.listen, false, &mut c2s_addrs),
        (&server.config.c2s.tls_listen, true, &mut tls_addrs),
    ] {
        for (listener, local) in bind_all(addrs)? {
            bound.push(local);
            listeners.spawn(c2s::accept_loop(server.clone(), listener, direct_tls));
        }
    }
    let mut component_addrs = Vec::new();
    if !server.config.components.is_empty() {
        for (listener, local) in bind_all(&server.config.component_listen)? {
            component_addrs.push(local);
            listeners.spawn(accept_each(
                server.clone(),
                listener,
                "component",
                crate::component::serve,
            ));
        }
    }
    if server.config.admin.enabled {
        let path = server.config.admin_socket();
        match crate::admin::bind(&path) {
            Ok(listener) => {
                listeners.spawn(crate::admin::serve(server.clone(), listener, path));
            }
            // The server runs without it; the CLI's live commands will say so.
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "no admin socket"),
        }
    }
    let mut s2s_addrs = Vec::new();
    let mut s2s_direct_tls_addrs = Vec::new();
    if server.config.s2s.enabled {
        for (listener, local) in bind_all(&server.config.s2s.listen)? {
            s2s_addrs.push(local);
            listeners.spawn(accept_each(
                server.clone(),
                listener,
                "s2s",
                crate::s2s::serve_incoming,
            ));
        }
        for (listener, local) in bind_all(&server.config.s2s.direct_tls_listen)? {
            s2s_direct_tls_addrs.push(local);
            listeners.spawn(accept_each(
                server.clone(),
                listener,
                "s2s direct TLS",
                crate::s2s::serve_incoming_direct_tls,
            ));
        }
    }
    let mut http_addrs = Vec::new();
    let mut https_addrs = Vec::new();
    if server.config.http.enabled {
        let tls = crate::http::tls_config(&server.tls).map_err(crate::tls::TlsError::from)?;
        let app = crate::http::router(&server);
        for (addrs, tls, bound) in [
            (&server.config.http.listen, None, &mut http_addrs),
            (&server.config.http.tls_listen, Some(tls), &mut https_addrs),
        ] {
            for (listener, local) in bind_all(addrs)? {
                bound.push(local);
                listeners.spawn(crate::http::accept_loop(
                    server.clone(),
                    app.clone(),
                    listener,
                    tls.clone(),
                ));
            }
        }
    }
    listeners.spawn(crate::memory::trim_periodically(server.shutdown_signal()));
    listeners.spawn(crate::modules::upload::sweep_periodically(server.clone()));
    Ok(RunningServer {
        server,
        c2s_addrs,
        tls_addrs,
        component_addrs,
        s2s_addrs,
        s2s_direct_tls_addrs,
        http_addrs,
        https_addrs,
        stop,
        listeners,
    })
}

/// The kernel's queue of connections not yet accepted: a login storm must not overflow
/// it (an overflow costs the client a one-second SYN retry).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds every address; the listeners with the addresses they got (port 0 picks one).
fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<(TcpListener, SocketAddr)>, StartError> {
    addrs
        .iter()
        .map(|addr| {
            let error = |source| StartError::Listen {
                addr: *addr,
                source,
            };
            let listener = listen(*addr).map_err(error)?;
            let local = listener.local_addr().map_err(error)?;
            Ok((listener, local))
        })
        .collect()
}

/// Accepts connections until shutdown, each served by a task of its own (`what` names
/// them in the log). Client connections go through admission instead (`c2s::accept_loop`).
async fn accept_each<F, Fut>(
    server: Arc<Server>,
    listener: TcpListener,
    what: &'static str,
    serve: F,
) where
    F: Fn(Arc<Server>, tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut shutdown = server.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve(server.clone(), tcp, peer));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, what, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl RunningServer {
    /// Stops accepting, closes every stream with `system-shutdown`, and waits (bounded)
    /// for the sessions to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.listeners.shutdown().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.server.connections.open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(cluster) = self.server.cluster.get() {
            cluster.leave().await;
        }
        self.server.store.close().await;
    }
}
