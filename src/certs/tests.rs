use super::*;

fn days(n: u32) -> impl FnOnce() -> Result<u32, crate::config::ConfigError> {
    move || Ok(n)
}

#[test]
fn generates_once_with_names_and_validity() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("frp");
    assert_eq!(
        ensure_frp_certs(&dir, days(40)).unwrap(),
        Outcome::Generated
    );
    let infos = describe(&dir).unwrap();
    assert_eq!(infos[0].subject, "CN=harp.nc CA");
    assert_eq!(infos[1].subject, "CN=harp.nc");
    assert_eq!(infos[2].subject, "CN=harp.client.nc");
    assert!(infos.iter().all(|i| (39..=40).contains(&i.days_left)));
    for f in [
        "ca.key",
        "ca.srl",
        "server.csr",
        "client.csr",
        "server-openssl.cnf",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    frp_server_acceptor(&dir).unwrap();
    client_config(
        &dir.join("ca.crt"),
        Some((&dir.join("client.crt"), &dir.join("client.key"))),
    )
    .unwrap();
}

/// `harp tunnel` negotiates AES-128-GCM with harp's FRP server (the suite Go's frpc picks),
/// not ring's first choice AES-256-GCM.
#[tokio::test]
async fn tunnel_client_negotiates_aes_128_gcm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("frp");
    ensure_frp_certs(&dir, days(40)).unwrap();
    let acceptor = frp_server_acceptor(&dir).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        client_config(
            &dir.join("ca.crt"),
            Some((&dir.join("client.crt"), &dir.join("client.key"))),
        )
        .unwrap(),
    ));
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move { acceptor.accept(b).await.map(|_| ()) });
    let name = rustls::pki_types::ServerName::try_from("harp.nc").unwrap();
    let tls = connector.connect(name, a).await.unwrap();
    server.await.unwrap().unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(
        conn.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
}

#[test]
fn partial_directory_is_refused_naming_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("frp");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), "x").unwrap();
    let err = ensure_frp_certs(&dir, days(5)).unwrap_err().to_string();
    assert!(
        err.contains("server.crt, server.key, client.crt, client.key"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("ca.crt")).unwrap(), b"x");
}

fn der(dir: &std::path::Path, file: &str) -> Vec<u8> {
    read_certs(&dir.join(file)).unwrap().remove(0).to_vec()
}

fn key_ids(der: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    use x509_parser::extensions::ParsedExtension;
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let mut ski = None;
    let mut aki = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => {}
        }
    }
    (ski, aki)
}

/// The identifiers OpenSSL chooses issuers by: every certificate names its own key, the leaves
/// name the CA's; only the CA may sign, and its name is not the server's.
#[test]
fn key_identifiers_link_server_and_client_to_a_distinct_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("frp");
    ensure_frp_certs(&dir, days(3)).unwrap();
    let ca_der = der(&dir, "ca.crt");
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    let (ca_ski, _) = key_ids(&ca_der);
    let ca_ski = ca_ski.expect("CA has a Subject Key Identifier");
    let bc = ca
        .basic_constraints()
        .unwrap()
        .expect("CA basicConstraints");
    assert!(bc.critical && bc.value.ca);
    let ku = ca.key_usage().unwrap().expect("CA keyUsage").value;
    assert!(ku.key_cert_sign() && ku.crl_sign(), "{ku:?}");
    for leaf in ["server.crt", "client.crt"] {
        let leaf_der = der(&dir, leaf);
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        assert_eq!(cert.issuer(), ca.subject(), "{leaf}");
        assert_ne!(cert.subject(), ca.subject(), "{leaf}");
        let (ski, aki) = key_ids(&leaf_der);
        let ski = ski.unwrap_or_else(|| panic!("{leaf} has no SKI"));
        assert_ne!(ski, ca_ski, "{leaf}");
        assert_eq!(aki.as_deref(), Some(&ca_ski[..]), "{leaf}");
        let bc = cert
            .basic_constraints()
            .unwrap()
            .expect("leaf basicConstraints");
        assert!(!bc.value.ca, "{leaf}");
    }
}

/// What `openssl verify`, curl and Python's `ssl` do with HaRP's certificates must also pass
/// with harp's: the real OpenSSL is the judge (it must be installed; the test never skips).
#[test]
fn openssl_verifies_server_and_client_against_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("frp");
    ensure_frp_certs(&dir, days(3)).unwrap();
    let out = std::process::Command::new("openssl")
        .current_dir(&dir)
        .args(["verify", "-CAfile", "ca.crt", "server.crt", "client.crt"])
        .output()
        .expect("the openssl command must be installed for this test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, "server.crt: OK\nclient.crt: OK\n", "{stderr}");
    // The server name frpc checks, through OpenSSL's own host-name matching.
    let out = std::process::Command::new("openssl")
        .current_dir(&dir)
        .args([
            "verify",
            "-CAfile",
            "ca.crt",
            "-verify_hostname",
            SERVER_NAME,
        ])
        .arg("server.crt")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
