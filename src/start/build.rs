//! Building the subsystems from the typed `Config`, once: each gets the narrow handle it needs
//! (the FRP server a login checker, the control API its stores and a forwarder, the front door
//! the pipeline's context and an upstream) and nothing else. The only place that sees them all.

use super::StartError;
use crate::certs;
use crate::config::Config;
use crate::control::{Control, LoginChecker};
use crate::docker::{SocketDialer, Wrappers};
use crate::frontdoor::{FrontDoor, Gate};
use crate::metrics::{Metrics, TunnelState};
use crate::nextcloud::{Nextcloud, NextcloudClient};
use crate::security::BanList;
use crate::tunnel::server::registry::Registry;
use crate::tunnel::server::settings::FrpSettings;
use crate::tunnel::server::TunnelDialer;
use crate::upstream::{Forwarder, LocalDialers, Resolver};
use ipnet::IpNet;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Everything harp runs, built but not yet listening.
pub(super) struct Subsystems {
    pub frp_settings: FrpSettings,
    pub frp_tls: Option<TlsAcceptor>,
    pub tunnels: Arc<Registry>,
    pub login: LoginChecker,
    pub bans: Arc<BanList>,
    pub nextcloud: Arc<Nextcloud>,
    /// Stopped last, after the drain (`Audit::stop`).
    pub audit: crate::audit::Audit,
    pub doors: DoorParts,
    /// `None` when `HP_METRICS_ADDRESS` is empty.
    pub metrics: Option<Arc<Metrics>>,
}

/// What every worker's [`FrontDoor`] shares, and how to make its own upstream pool.
pub(super) struct DoorParts {
    gate: Arc<Gate>,
    control: Arc<Control>,
    pub resolver: Arc<Resolver>,
    trusted_proxies: Arc<[IpNet]>,
    timeouts: crate::config::Timeouts,
    dialers: LocalDialers,
    metrics: Option<Arc<Metrics>>,
}

impl DoorParts {
    /// One worker's front door, with a fresh upstream pool for that worker's runtime.
    pub(super) fn door(&self) -> FrontDoor {
        FrontDoor {
            gate: self.gate.clone(),
            control: self.control.clone(),
            forwarder: match &self.metrics {
                Some(m) => forwarder(&self.timeouts, &self.dialers)
                    .with_upgraded_gauge(m.upgraded_connections.clone()),
                None => forwarder(&self.timeouts, &self.dialers),
            },
            resolver: self.resolver.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            client_timeout: self.timeouts.client,
            metrics: self.metrics.clone(),
        }
    }
}

fn forwarder(t: &crate::config::Timeouts, dialers: &LocalDialers) -> Forwarder {
    Forwarder::new(t.connect, t.server, t.tunnel, dialers.clone())
}

pub(super) fn build(config: &Config) -> Result<Subsystems, StartError> {
    let key = config.shared_key.clone();
    let client = NextcloudClient::new(&config.nextcloud_base, key.clone())?;
    let frp_certs = certs::frp_dir(&config.certs_dir);
    // Certificates before any listener: the FRP server must be able to verify clients.
    if !config.frp_disable_tls {
        certs::ensure_frp_certs(&frp_certs, || config.frp_cert_validity_days())?;
        certs::warn_if_expiring(&frp_certs);
    }
    let harp_frp = FrpSettings::harp_defaults(
        config.frp_addr.clone(),
        (!config.frp_disable_tls).then_some(frp_certs.as_path()),
    );
    let frp_settings = FrpSettings::load(&config.frps_config, harp_frp)?;
    let frp_tls = match &frp_settings.tls {
        Some(t) => Some(certs::server_acceptor(&t.cert, &t.key, t.ca.as_deref())?),
        None => None,
    };
    let tunnels = Registry::with_policy(
        frp_settings.allow_ports.clone(),
        frp_settings.max_ports_per_client,
        &frp_settings.auth_token,
    );
    // The Docker socket serves 24000 first; every other tunnel port goes through FRP.
    let dialers = LocalDialers::new(vec![
        Arc::new(SocketDialer {
            path: config.docker_socket.clone(),
        }),
        Arc::new(TunnelDialer(tunnels.clone())),
    ]);
    let bans = BanList::new(config.blacklist_window, config.blacklist_count);
    let metrics = config.metrics_addr.is_some().then(|| {
        let registry = tunnels.clone();
        Arc::new(Metrics::new().with_tunnel_state(move || {
            let c = registry.counts();
            TunnelState {
                sessions: c.sessions,
                exapp_proxies: c.exapp_proxies,
                engine_proxies: c.engine_proxies,
                other_proxies: c.other_proxies,
                work_conns: c.work_conns,
            }
        }))
    });
    let bans = Arc::new(match &metrics {
        Some(m) => bans.with_counters(m.bans.clone()),
        None => bans,
    });
    if let Some(m) = &metrics {
        let bans = bans.clone();
        m.set_bans_state(move || bans.active());
    }
    // Bans outlive a restart when HP_DATA_DIR is usable (the store warns once when not).
    // One check and one warning for both users of the data directory.
    let (audit, persist) = match crate::store::check_data_dir(&config.data_dir) {
        Ok(()) => (
            crate::audit::open(&config.data_dir, config.audit_rotate_bytes),
            crate::store::persist_bans(&config.data_dir, &bans),
        ),
        Err(e) => {
            tracing::warn!(
                "HP_DATA_DIR cannot be used ({e}): bans are kept in memory only and no audit log is written"
            );
            (crate::audit::Audit::default(), None)
        }
    };
    let ban_audit = audit.clone();
    bans.set_sink(Box::new(move |ip, lasts| {
        if let Some(persist) = &persist {
            persist(ip, lasts);
        }
        ban_audit.record(
            "ban",
            Some(ip),
            "",
            format!("banned for {}s", lasts.as_secs()),
        );
    }));
    // `expose` asks Nextcloud directly (no cache in between): it is about to fill the cache.
    let nextcloud_client = client.clone();
    let mut nextcloud = Nextcloud::new(client, config.session_lifetime)
        .with_basic_auth_cache(config.basic_auth_cache);
    if let Some(m) = &metrics {
        nextcloud = nextcloud.with_metrics(m.nextcloud.clone());
    }
    let k8s = crate::k8s::Backend::new(&config.k8s).map(Arc::new);
    if let Some(k8s) = &k8s {
        let k8s = k8s.clone();
        nextcloud = nextcloud.with_upstream_hook(Arc::new(move |app: String| {
            let k8s = k8s.clone();
            Box::pin(async move { k8s.resolve(&app).await })
        }));
    }
    let nextcloud = Arc::new(nextcloud);
    let mut login = LoginChecker::new(key.clone(), bans.clone()).with_audit(audit.clone());
    if let Some(m) = &metrics {
        login = login.with_failure_counter(m.frp_login_failures.clone());
    }
    let control = Arc::new(Control {
        login: login.clone(),
        metadata: nextcloud.meta_cache_handle(),
        docker: Wrappers {
            // The control path's own pool (Docker wrappers), apart from the workers'.
            forwarder: forwarder(&config.timeouts, &dialers),
            frp_certs,
            calls: metrics.as_ref().map(|m| m.docker.clone()),
        },
        audit: audit.clone(),
        k8s,
        nextcloud: nextcloud_client,
        k8s_calls: metrics.as_ref().map(|m| m.k8s.clone()),
    });
    let gate = Arc::new(Gate {
        key,
        bans: bans.clone(),
        nextcloud: nextcloud.clone(),
    });
    let doors = DoorParts {
        gate,
        control,
        resolver: Arc::new(Resolver::default()),
        trusted_proxies: config.trusted_proxies.clone().into(),
        timeouts: config.timeouts,
        dialers,
        metrics: metrics.clone(),
    };
    Ok(Subsystems {
        frp_settings,
        frp_tls,
        tunnels,
        login,
        bans,
        nextcloud,
        audit,
        doors,
        metrics,
    })
}
