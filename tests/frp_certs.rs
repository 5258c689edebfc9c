//! FRP certificate generation and checks at start-up (contract §1.9, §9 items 18, 19, 21).

mod common;

use common::exapp::unix_app;
use common::frpc::*;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;

fn san_dns(path: &Path) -> Vec<String> {
    let pem = std::fs::read(path).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = p.parse_x509().unwrap();
    cert.subject_alternative_name()
        .unwrap()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|n| format!("{n}"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn item18_start_generates_ca_server_client_with_names_and_validity() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .envs(&[("HP_FRP_CERT_VALIDITY_DAYS", "100")])
        .start()
        .await;
    let dir = h.certs();
    for f in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let infos = harp::certs::describe(&dir).unwrap();
    let subjects: Vec<_> = infos.iter().map(|i| i.subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["CN=harp.nc CA", "CN=harp.nc", "CN=harp.client.nc"]
    );
    assert!(
        infos.iter().all(|i| (99..=100).contains(&i.days_left)),
        "{infos:?}"
    );
    assert_eq!(san_dns(&dir.join("server.crt")), ["DNSName(harp.nc)"]);
    assert_eq!(
        san_dns(&dir.join("client.crt")),
        ["DNSName(harp.client.nc)"]
    );
    h.shutdown().await;
}

fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (std::fs::read(e.path()).unwrap(), meta.modified().unwrap()),
            )
        })
        .collect()
}

#[tokio::test]
async fn item19_existing_cert_dir_left_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let dir = h.certs();
    h.shutdown().await;
    let before = snapshot(&dir);
    // Validity is not even looked at when nothing has to be generated.
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .envs(&[("HP_FRP_CERT_VALIDITY_DAYS", "abc")])
        .start()
        .await;
    h.shutdown().await;
    assert_eq!(before, snapshot(&dir));
}

fn vars(dir: &Path, extra: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    let mut v: std::collections::HashMap<String, String> = [
        ("HP_SHARED_KEY", KEY),
        ("NC_INSTANCE_URL", "http://127.0.0.1:1"),
        ("HP_EXAPPS_ADDRESS", "127.0.0.1:0"),
        ("HP_FRP_ADDRESS", "127.0.0.1:0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    v.insert(
        "HP_CERTS_DIR".into(),
        dir.join("certs").to_string_lossy().into(),
    );
    v.insert(
        "HP_CONFIG_DIR".into(),
        dir.join("run").to_string_lossy().into(),
    );
    for (k, val) in extra {
        v.insert(k.to_string(), val.to_string());
    }
    v
}

#[tokio::test]
async fn item21_invalid_validity_days_refuses_start_when_generating() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg =
        harp::config::Config::from_vars(&vars(tmp.path(), &[("HP_FRP_CERT_VALIDITY_DAYS", "abc")]))
            .unwrap();
    let err = harp::Harp::bind(cfg).await.err().expect("start refused");
    assert!(
        err.to_string().contains("HP_FRP_CERT_VALIDITY_DAYS"),
        "{err}"
    );
    assert!(!tmp.path().join("certs/frp").exists());
    // With TLS off nothing is generated, so the value does not matter.
    let cfg = harp::config::Config::from_vars(&vars(
        tmp.path(),
        &[
            ("HP_FRP_CERT_VALIDITY_DAYS", "abc"),
            ("HP_FRP_DISABLE_TLS", "true"),
        ],
    ))
    .unwrap();
    assert!(harp::Harp::bind(cfg).await.is_ok());
}

#[tokio::test]
async fn partial_cert_dir_refused_with_missing_files_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs/frp");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), "keep me").unwrap();
    let cfg = harp::config::Config::from_vars(&vars(tmp.path(), &[])).unwrap();
    let err = harp::Harp::bind(cfg)
        .await
        .err()
        .expect("start refused")
        .to_string();
    assert!(
        err.contains("missing: server.crt, server.key, client.crt, client.key"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("ca.crt")).unwrap(), b"keep me");
}

#[test]
fn harp_certs_prints_fingerprints_and_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs/frp");
    harp::certs::ensure_frp_certs(&dir, || Ok(20)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_harp"))
        .arg("certs")
        .env_clear()
        .env("HP_SHARED_KEY", KEY)
        .env("NC_INSTANCE_URL", "http://127.0.0.1:1")
        .env("HP_CERTS_DIR", tmp.path().join("certs"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains("client.crt: subject CN=harp.client.nc; SHA256 "),
        "{text}"
    );
    assert!(text.contains("WARNING: expires soon"), "{text}");
}

/// Checklist 22: a user-supplied frps.toml replaces HaRP's FRP server settings (here: its own
/// port, plain TCP, an allow-list of two ports, two proxies per client and an frp
/// auth.token), and the real frpc configured to match is served through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item22_user_supplied_frps_toml_is_used_instead_of_generated_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app_port = port_for(23000, "item22");
    let frps = tmp.path().join("frps.toml");
    std::fs::write(
        &frps,
        format!(
            "bindAddr = \"127.0.0.1\"\nbindPort = {port}\nproxyBindAddr = \"127.0.0.1\"\nmaxPortsPerClient = 2\nallowPorts = [ {{ single = {app_port} }}, {{ single = {} }} ]\nauth.token = \"s3cret\"\nwebServer.port = 7500\n",
            app_port + 1
        ),
    )
    .unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .envs(&[
            ("HP_FRPS_CONFIG", frps.to_str().unwrap()),
            ("HP_FRP_DISABLE_TLS", "true"),
        ])
        .start()
        .await;
    assert_eq!(
        h.frp.port(),
        port,
        "bindPort from frps.toml wins over HP_FRP_ADDRESS"
    );
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "app22").await;
    let toml = frpc_toml(
        h.frp,
        KEY,
        Tls::Off,
        &[
            ProxySpec {
                name: "app22",
                port: app_port,
                unix: &sock,
            },
            ProxySpec {
                name: "app22b",
                port: app_port + 1,
                unix: &sock,
            },
        ],
    )
    .replace("log.level", "auth.token = \"s3cret\"\nlog.level");
    let frpc = start_frpc(tmp.path(), "frpc", &toml);
    push_tunnel_meta(&h, "app22", app_port).await;
    push_tunnel_meta(&h, "app22b", app_port + 1).await;
    let t = std::time::Duration::from_secs(30);
    assert_eq!(
        wait_ok(&h, "/exapps/app22/a", &[], t).await,
        "app22: GET /a body=0"
    );
    assert_eq!(
        wait_ok(&h, "/exapps/app22b/b", &[], t).await,
        "app22: GET /b body=0"
    );
    assert!(frpc.log_text().contains("login to server success"));
    h.shutdown().await;
}

/// HaRP's `start.sh` commands for `/certs/frp` (RSA 2048, the CA and the server both named
/// `harp.nc`, SANs from an openssl config), so a migration test uses what HaRP really made.
const HARP_CERT_SCRIPT: &str = r#"set -e
cnf() { printf '[ req ]\ndefault_bits = 2048\ndefault_md = sha256\nprompt = no\ndistinguished_name = dn\nreq_extensions = req_ext\n\n[ dn ]\nCN = %s\n\n[ req_ext ]\nsubjectAltName = DNS:%s\n' "$1" "$1"; }
cnf harp.nc > server-openssl.cnf
cnf harp.client.nc > client-openssl.cnf
openssl genrsa -out ca.key 2048
openssl req -x509 -new -nodes -key ca.key -subj /CN=harp.nc -days 5000 -out ca.crt
openssl genrsa -out server.key 2048
openssl req -new -sha256 -key server.key -subj /CN=harp.nc -reqexts req_ext -config server-openssl.cnf -out server.csr
openssl x509 -req -days 5000 -sha256 -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -extfile server-openssl.cnf -extensions req_ext -out server.crt
openssl genrsa -out client.key 2048
openssl req -new -sha256 -key client.key -subj /CN=harp.client.nc -config client-openssl.cnf -out client.csr
openssl x509 -req -days 5000 -sha256 -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -extfile client-openssl.cnf -extensions req_ext -out client.crt
"#;

/// Moving from HaRP keeps its `/certs` volume (MIGRATING.md): harp serves FRP with HaRP's RSA
/// files as they are, the real frpc logs in with HaRP's client files, and nothing is rewritten.
#[tokio::test]
async fn harps_rsa_certificates_are_used_as_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs/frp");
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(HARP_CERT_SCRIPT)
        .current_dir(&dir)
        .output()
        .expect("the certificate tests need openssl (tests/setup installs it)");
    assert!(
        out.status.success(),
        "HaRP's certificate commands failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = snapshot(&dir);
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let sock = tmp.path().join("app.sock");
    let _app = unix_app(&sock, "rsa").await;
    let port = port_for(23000, "harp-rsa-certs");
    let frpc = start_frpc(
        tmp.path(),
        "rsa",
        &single_proxy_toml(&h, "rsaapp", port, &sock),
    );
    let registered = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        h.wait_tunnel(port, std::time::Duration::from_secs(30)),
    )
    .await;
    assert!(registered.is_ok(), "frpc log:\n{}", frpc.log_text());
    h.shutdown().await;
    assert_eq!(before, snapshot(&dir), "HaRP's files were modified");
}
