//! harp: a drop-in Rust replacement for Nextcloud's HaRP (the AppAPI reverse proxy).
//!
//! Data flow of one ExApp request: `frontdoor` accepts → `pipeline` decides (asking `security`
//! and `nextcloud`) → `upstream` forwards (or `control` answers) → the response streams back.
//! [`Harp::bind`] wires the parts; [`Harp::serve`] runs them until shutdown.

#![forbid(unsafe_code)]
// `pub` only for what main.rs, tests/, bench/ and fuzz/ use: everything else is `pub(crate)`, so
// the compiler reports dead code.
#![warn(unreachable_pub)]

pub mod certs;
pub mod config;
pub(crate) mod contract;
pub(crate) mod control;
pub(crate) mod docker;
pub mod frontdoor;
pub mod health;
pub(crate) mod net;
pub mod nextcloud;
pub mod pipeline;
pub mod security;
pub mod state;
pub mod tunnel;
pub mod upstream;

use crate::config::Config;
use crate::frontdoor::{Listener, TlsReloader, Worker};
use crate::nextcloud::{Nextcloud, NextcloudClient, NextcloudError};
use crate::security::BanList;
use crate::state::AppState;
use crate::upstream::{Forwarder, LocalDialers};
use arc_swap::ArcSwap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

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

/// How often expired bans and sessions are swept from memory.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// A bound, not yet serving, harp.
pub struct Harp {
    frp: tokio::net::TcpListener,
    frp_tls: Option<tokio_rustls::TlsAcceptor>,
    frp_settings: tunnel::server::settings::FrpSettings,
    tunnels: Arc<tunnel::server::registry::Registry>,
    http: Listener,
    https: Option<Listener>,
    state: Arc<AppState>,
    local_engine: Option<docker::LocalEngineListener>,
}

impl Harp {
    /// Builds the shared state and binds every listener (so ports are known before serving).
    pub async fn bind(config: Config) -> Result<Harp, StartError> {
        let client = NextcloudClient::new(&config.nextcloud_base, config.shared_key.clone())?;
        // Certificates before any listener: the FRP server must be able to verify clients.
        if !config.frp_disable_tls {
            let dir = certs::frp_dir(&config.certs_dir);
            certs::ensure_frp_certs(&dir, || config.frp_cert_validity_days())?;
            certs::warn_if_expiring(&dir);
        }
        let frp_settings = tunnel::server::settings::FrpSettings::load(&config)?;
        let frp_tls = match &frp_settings.tls {
            Some(t) => Some(certs::server_acceptor(&t.cert, &t.key, t.ca.as_deref())?),
            None => None,
        };
        let tunnels = tunnel::server::registry::Registry::with_policy(
            frp_settings.allow_ports.clone(),
            frp_settings.max_ports_per_client,
            &frp_settings.auth_token,
        );
        // The Docker socket serves 24000 first; every other tunnel port goes through FRP.
        let dialers = LocalDialers::new(vec![
            Arc::new(docker::SocketDialer {
                path: config.docker_socket.clone(),
            }),
            Arc::new(tunnel::server::TunnelDialer(tunnels.clone())),
        ]);
        let state = Arc::new(AppState {
            key: config.shared_key.clone(),
            bans: BanList::new(config.blacklist_window, config.blacklist_count),
            nextcloud: Nextcloud::new(client, config.session_lifetime),
            forwarder: Forwarder::new(
                config.timeouts.connect,
                config.timeouts.server,
                config.timeouts.tunnel,
                dialers.clone(),
            ),
            dialers,
            config,
        });
        let cfg = &state.config;
        let http = Listener {
            sockets: frontdoor::bind_sockets(&cfg.exapps_addr, cfg.workers).map_err(|source| {
                StartError::Bind {
                    var: "HP_EXAPPS_ADDRESS",
                    addr: cfg.exapps_addr.to_string(),
                    source,
                }
            })?,
            tls: None,
        };
        let cert = cfg.certs_dir.join("cert.pem");
        let https = if cert.exists() {
            let acceptor = frontdoor::load_tls_acceptor(&cert)?;
            let sockets =
                frontdoor::bind_sockets(&cfg.exapps_https_addr, cfg.workers).map_err(|source| {
                    StartError::Bind {
                        var: "HP_EXAPPS_HTTPS_ADDRESS",
                        addr: cfg.exapps_https_addr.to_string(),
                        source,
                    }
                })?;
            Some(Listener {
                sockets,
                tls: Some(TlsReloader {
                    path: cert,
                    current: Arc::new(ArcSwap::from_pointee(acceptor)),
                }),
            })
        } else {
            tracing::info!(path = %cert.display(), "no HTTPS certificate; HTTPS listener disabled");
            None
        };
        // Bound last: a taken front-door port is reported as such, not as an FRP problem.
        let frp = frontdoor::bind(&frp_settings.bind)
            .await
            .map_err(|source| StartError::Bind {
                var: if frp_settings.source.is_some() {
                    "frps.toml bindAddr/bindPort"
                } else {
                    "HP_FRP_ADDRESS"
                },
                addr: frp_settings.bind.to_string(),
                source,
            })?;
        let local_engine =
            docker::bind_local_engine_listener(cfg.local_engine_listen, cfg.docker_socket.clone())
                .await;
        Ok(Harp {
            frp,
            frp_tls,
            frp_settings,
            tunnels,
            http,
            https,
            state,
            local_engine,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Where FRP clients connect (tests bind port 0 and read it here).
    pub fn frp_addr(&self) -> SocketAddr {
        self.frp
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Live tunnels (ports owned by FRP clients).
    pub fn tunnels(&self) -> Arc<tunnel::server::registry::Registry> {
        self.tunnels.clone()
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https
            .as_ref()
            .map(|l| l.local_addr().expect("bound listener has an address"))
    }

    /// Where the loopback relay to the local Docker engine listens (None if its port was taken).
    pub fn local_engine_addr(&self) -> Option<SocketAddr> {
        self.local_engine.as_ref().and_then(|l| l.local_addr())
    }

    /// The shared state (tests inspect bans and caches through it).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Handle that reloads the HTTPS certificate (for SIGHUP); None when HTTPS is off.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.https.as_ref().and_then(|l| l.tls.clone())
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    ///
    /// Worker 0 runs on the caller's runtime; each further worker gets its own thread with a
    /// single-threaded runtime, its own listening sockets (SO_REUSEPORT) and its own upstream
    /// pool, so a request is handled start to finish on one thread without hand-offs.
    ///
    /// If a core task (the FRP server or an accept loop) ends on its own, harp stops and
    /// returns the error so the process exits non-zero and a supervisor restarts it cleanly,
    /// instead of running half-working (contract §6.4).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), CoreTaskDied> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(self.state.config.max_connections));
        let sweeper = tokio::spawn(sweep(self.state.clone()));
        let relay_idle = self.state.config.timeouts.tunnel;
        let relay = self.local_engine.map(|l| tokio::spawn(l.serve(relay_idle)));
        let frp = tokio::spawn(tunnel::server::serve(
            self.frp,
            tunnel::server::ServerCtx {
                registry: self.tunnels.clone(),
                state: self.state.clone(),
                tls: self.frp_tls,
                force_tls: self.frp_settings.force_tls,
                auth_token: self.frp_settings.auth_token.clone(),
                loopback_listeners: Some(self.frp_settings.proxy_bind_addr),
            },
            stop_rx.clone(),
        ));

        let mut per_worker: Vec<Vec<(std::net::TcpListener, Option<TlsReloader>)>> =
            (0..self.state.config.workers).map(|_| Vec::new()).collect();
        for listener in std::iter::once(self.http).chain(self.https) {
            for (i, socket) in listener.sockets.into_iter().enumerate() {
                per_worker[i].push((socket, listener.tls.clone()));
            }
        }
        let mut local_loops = Vec::new();
        let mut threads = Vec::new();
        for (i, sockets) in per_worker.into_iter().enumerate() {
            let state = self.state.clone();
            let (limit, stop) = (limit.clone(), stop_rx.clone());
            if i == 0 {
                let worker = Arc::new(Worker {
                    forwarder: state.new_forwarder(),
                    state,
                });
                for (socket, tls) in sockets {
                    let w = worker.clone();
                    local_loops.push(tokio::spawn(frontdoor::accept_loop(
                        socket,
                        tls,
                        w,
                        limit.clone(),
                        stop.clone(),
                    )));
                }
                continue;
            }
            let mut done = done_rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("harp-worker-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start worker runtime");
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let worker = Arc::new(Worker {
                            forwarder: state.new_forwarder(),
                            state,
                        });
                        let loops = sockets.into_iter().map(|(socket, tls)| {
                            frontdoor::accept_loop(
                                socket,
                                tls,
                                worker.clone(),
                                limit.clone(),
                                stop.clone(),
                            )
                        });
                        futures_util::future::join_all(loops).await;
                        // Keep this runtime (and the connections it owns) alive until drained.
                        let _ = done.wait_for(|d| *d).await;
                    });
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => tracing::error!(error = %e, "cannot start worker thread {i}"),
            }
        }

        let mut core: Vec<(&'static str, tokio::task::JoinHandle<()>)> = vec![("FRP server", frp)];
        core.extend(
            local_loops
                .into_iter()
                .map(|l| ("front-door accept loop", l)),
        );
        let died = supervise(shutdown, &mut core).await;
        match died {
            Some(name) => tracing::error!("{name} stopped unexpectedly; shutting down"),
            None => tracing::info!("shutting down"),
        }
        let _ = stop_tx.send(true);
        for (_, task) in core {
            let _ = task.await;
        }
        frontdoor::drain(limit, self.state.config.max_connections).await;
        let _ = done_tx.send(true);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        sweeper.abort();
        if let Some(r) = relay {
            r.abort();
        }
        died.map_or(Ok(()), |name| Err(CoreTaskDied(name)))
    }
}

/// A task harp cannot run without ended while harp was meant to be serving.
#[derive(Debug, thiserror::Error)]
#[error("{0} stopped unexpectedly")]
pub struct CoreTaskDied(pub &'static str);

/// Waits for `shutdown`, or for the first core task to finish by itself (returning its name).
async fn supervise(
    shutdown: impl Future<Output = ()>,
    core: &mut [(&'static str, tokio::task::JoinHandle<()>)],
) -> Option<&'static str> {
    let any_finished = futures_util::future::select_all(core.iter_mut().map(|(_, t)| t));
    tokio::select! {
        _ = shutdown => None,
        (_, index, _) = any_finished => Some(core[index].0),
    }
}

async fn sweep(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        state.bans.sweep_at(std::time::Instant::now());
        state.nextcloud.session_cache().sweep();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn item28_a_core_task_ending_is_reported() {
        let mut core = vec![
            ("long", tokio::spawn(std::future::pending::<()>())),
            ("short", tokio::spawn(async {})),
        ];
        let died = supervise(std::future::pending(), &mut core).await;
        assert_eq!(died, Some("short"));
    }

    #[tokio::test]
    async fn shutdown_wins_while_core_tasks_run() {
        let mut core = vec![("long", tokio::spawn(std::future::pending::<()>()))];
        assert_eq!(supervise(async {}, &mut core).await, None);
    }
}
