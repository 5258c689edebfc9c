//! Binding every listener before serving, so ports are known (and a taken port reported by the
//! variable that names it) before anything runs.

use super::StartError;
use crate::config::{BindAddr, Config};
use crate::docker::{bind_local_engine_listener, LocalEngineListener};
use crate::frontdoor::{self, Listener, TlsReloader};
use crate::tunnel::server::settings::FrpSettings;
use arc_swap::ArcSwap;
use std::sync::Arc;

pub(super) struct Listeners {
    pub http: Listener,
    pub https: Option<Listener>,
    pub frp: tokio::net::TcpListener,
    pub local_engine: Option<LocalEngineListener>,
    /// `/metrics` (HP_METRICS_ADDRESS); `None` when metrics are off.
    pub metrics: Option<tokio::net::TcpListener>,
}

pub(super) async fn bind(config: &Config, frp: &FrpSettings) -> Result<Listeners, StartError> {
    let http = Listener {
        sockets: worker_sockets(&config.exapps_addr, config.workers, "HP_EXAPPS_ADDRESS")?,
        tls: None,
    };
    let cert = config.certs_dir.join("cert.pem");
    let https = if cert.exists() {
        let acceptor = frontdoor::load_tls_acceptor(&cert)?;
        let sockets = worker_sockets(
            &config.exapps_https_addr,
            config.workers,
            "HP_EXAPPS_HTTPS_ADDRESS",
        )?;
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
    let frp_listener = frontdoor::bind(&frp.bind)
        .await
        .map_err(|source| StartError::Bind {
            var: if frp.source.is_some() {
                "frps.toml bindAddr/bindPort"
            } else {
                "HP_FRP_ADDRESS"
            },
            addr: frp.bind.to_string(),
            source,
        })?;
    let local_engine =
        bind_local_engine_listener(config.local_engine_listen, config.docker_socket.clone()).await;
    let metrics = match &config.metrics_addr {
        Some(addr) => Some(
            frontdoor::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    var: "HP_METRICS_ADDRESS",
                    addr: addr.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    Ok(Listeners {
        http,
        https,
        frp: frp_listener,
        local_engine,
        metrics,
    })
}

fn worker_sockets(
    addr: &BindAddr,
    workers: usize,
    var: &'static str,
) -> Result<Vec<std::net::TcpListener>, StartError> {
    frontdoor::bind_sockets(addr, workers).map_err(|source| StartError::Bind {
        var,
        addr: addr.to_string(),
        source,
    })
}
