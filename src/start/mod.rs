//! Start-up and the life of a running harp, one step per file: [`build`] the subsystems from the
//! typed `Config` → [`bind`] every listener → start the [`workers`] → [`supervise`] until
//! shutdown (or a core task dies) → drain. [`Harp`] is the bound, not yet serving, state
//! between `bind` and `serve`.

mod bind;
mod build;
mod supervise;
mod workers;

pub use supervise::CoreTaskDied;

use crate::config::Config;
use crate::docker::LocalEngineListener;
use crate::frontdoor::{Listener, TlsReloader};
use crate::nextcloud::{Nextcloud, NextcloudError};
use crate::security::BanList;
use crate::tunnel::server::registry::Registry;
use crate::tunnel::server::{self, ServerCtx};
use crate::upstream::Resolver;
use crate::{certs, frontdoor, tunnel};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// How long stopping waits for the audit writer to write what is queued.
const AUDIT_STOP_WAIT: Duration = Duration::from_secs(5);

/// Why harp could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({var}): {source}")]
    Bind {
        var: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTPS certificate: {0}")]
    Tls(#[from] frontdoor::TlsError),
    #[error(transparent)]
    Nextcloud(#[from] NextcloudError),
    #[error("FRP certificates: {0}")]
    Certs(#[from] certs::CertError),
    #[error("frps.toml: {0}")]
    FrpSettings(#[from] tunnel::server::settings::SettingsError),
    #[error(transparent)]
    CoreTask(#[from] CoreTaskDied),
}

/// A bound, not yet serving, harp.
pub struct Harp {
    parts: build::Subsystems,
    listeners: bind::Listeners,
    workers: usize,
    max_connections: usize,
    /// HP_TIMEOUT_TUNNEL, for the loopback relays (`None`: unlimited).
    tunnel_idle: Option<Duration>,
}

impl Harp {
    /// Builds the subsystems and binds every listener (so ports are known before serving).
    pub async fn bind(config: Config) -> Result<Harp, StartError> {
        let parts = build::build(&config)?;
        let listeners = bind::bind(&config, &parts.frp_settings).await?;
        Ok(Harp {
            parts,
            listeners,
            workers: config.workers,
            max_connections: config.max_connections,
            tunnel_idle: config.timeouts.tunnel,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.listeners
            .http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Where FRP clients connect (tests bind port 0 and read it here).
    pub fn frp_addr(&self) -> SocketAddr {
        self.listeners
            .frp
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Live tunnels (ports owned by FRP clients).
    pub fn tunnels(&self) -> Arc<Registry> {
        self.parts.tunnels.clone()
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        let https = self.listeners.https.as_ref();
        https.map(|l| l.local_addr().expect("bound listener has an address"))
    }

    /// Where the loopback relay to the local Docker engine listens (None if its port was taken).
    pub fn local_engine_addr(&self) -> Option<SocketAddr> {
        let relay = self.listeners.local_engine.as_ref();
        relay.and_then(LocalEngineListener::local_addr)
    }

    /// The ban list, for inspection (tests read failures and bans through it).
    pub fn bans(&self) -> Arc<BanList> {
        self.parts.bans.clone()
    }

    /// Nextcloud's caches and lookups, for inspection (tests read the metadata cache and the
    /// number of lookups in flight through it).
    pub fn nextcloud(&self) -> Arc<Nextcloud> {
        self.parts.nextcloud.clone()
    }

    /// The memo of resolved ExApp hostnames, for inspection.
    pub fn resolver(&self) -> Arc<Resolver> {
        self.parts.doors.resolver.clone()
    }

    /// Where `/metrics` is served (None when HP_METRICS_ADDRESS is empty).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        let l = self.listeners.metrics.as_ref();
        l.map(|l| l.local_addr().expect("bound listener has an address"))
    }

    /// Handle that reloads the HTTPS certificate (for SIGHUP); None when HTTPS is off.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.listeners.https.as_ref().and_then(|l| l.tls.clone())
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    ///
    /// If a core task (the FRP server or an accept loop) ends on its own, harp stops and
    /// returns the error so the process exits non-zero and a supervisor restarts it cleanly,
    /// instead of running half-working (contract §6.4).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), CoreTaskDied> {
        let Harp {
            parts,
            listeners,
            workers,
            max_connections,
            tunnel_idle,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(max_connections));
        let sweeper = tokio::spawn(supervise::sweep(
            parts.bans.clone(),
            parts.nextcloud.clone(),
        ));
        let relay = (listeners.local_engine).map(|l| tokio::spawn(l.serve(tunnel_idle)));
        let scrape = match (listeners.metrics, parts.metrics.clone()) {
            (Some(l), Some(m)) => Some(tokio::spawn(crate::metrics::serve(l, m, stop_rx.clone()))),
            _ => None,
        };
        let frp_ctx = ServerCtx {
            registry: parts.tunnels.clone(),
            login: parts.login.clone(),
            tunnel_idle,
            tls: parts.frp_tls,
            force_tls: parts.frp_settings.force_tls,
            auth_token: parts.frp_settings.auth_token.clone(),
            loopback_listeners: Some(parts.frp_settings.proxy_bind_addr),
        };
        let frp = tokio::spawn(server::serve(listeners.frp, frp_ctx, stop_rx.clone()));
        let doors: Vec<Listener> = std::iter::once(listeners.http)
            .chain(listeners.https)
            .collect();
        let mut running = workers::start(
            workers,
            doors.into_iter(),
            &parts.doors,
            &limit,
            &stop_rx,
            &done_rx,
        );
        let mut core = supervise::core_tasks(frp, &mut running);
        let died = supervise::supervise(shutdown, &mut core).await;
        match died {
            Some(name) => tracing::error!("{name} stopped unexpectedly; shutting down"),
            None => tracing::info!("shutting down"),
        }
        let threads = running.threads;
        let audit = parts.audit.clone();
        supervise::drain(stop_tx, core, limit, max_connections, done_tx, threads).await;
        // Last, so records of drained requests are in it; bounded like the drain.
        let flushed = tokio::task::spawn_blocking(move || audit.stop(AUDIT_STOP_WAIT)).await;
        if !matches!(flushed, Ok(true)) {
            tracing::warn!("the audit writer did not finish in time; its last records may be lost");
        }
        sweeper.abort();
        if let Some(r) = relay {
            r.abort();
        }
        if let Some(s) = scrape {
            s.abort();
        }
        died.map_or(Ok(()), |name| Err(CoreTaskDied(name)))
    }
}

/// Binds and serves with `config` until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    Harp::bind(config).await?.serve(shutdown).await?;
    Ok(())
}
