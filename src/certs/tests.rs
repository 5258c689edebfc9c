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
    assert_eq!(infos[0].subject, "CN=harp.nc");
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
