//! `install_certificates` (§4.6). FRP certificates go in first and independently of the system
//! bundle (the §4.6 improvement: a non-root image that cannot write the system CA directory still
//! gets the certificates its frpc needs, which was HaRP #42's failed test deploy).

use super::NameFields;
use crate::contract::ControlReply;
use crate::docker::engine::Engine;
use crate::docker::wrappers::lifecycle::not_found;
use crate::docker::DockerError;
use serde::Deserialize;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, SystemTime};

#[derive(Debug, Deserialize)]
pub(super) struct CertBody {
    #[serde(flatten)]
    names: NameFields,
    #[serde(default)]
    system_certs_bundle: Option<String>,
    #[serde(default)]
    install_frp_certs: Option<bool>,
}

const FRP_FILES: [&str; 3] = ["ca.crt", "client.crt", "client.key"];
/// The stop that restores a stopped container runs after the budget, so it gets its own.
const RESTORE_STOP_BUDGET: Duration = Duration::from_secs(30);

pub(super) async fn install(
    engine: &Engine<'_>,
    body: CertBody,
    frp_dir: &Path,
    budget: Duration,
) -> Result<ControlReply, DockerError> {
    let container = body.names.names()?.container();
    let timed_out = || {
        DockerError::Timeout(format!(
            "installing certificates into '{container}' did not finish within {} s",
            budget.as_secs()
        ))
    };
    let started = tokio::time::Instant::now();
    let path = format!("/containers/{container}/json");
    let inspect = tokio::time::timeout(budget, engine.get(&path))
        .await
        .map_err(|_| timed_out())??;
    match inspect.status.as_u16() {
        200 => {}
        404 => return Err(not_found(&container)),
        _ => return Err(inspect.unexpected(format!("inspect of '{container}'"))),
    }
    let was_running = inspect
        .json()
        .and_then(|v| v.pointer("/State/Running").and_then(|r| r.as_bool()))
        .unwrap_or(false);
    let work = install_into(
        engine,
        &container,
        was_running,
        body.system_certs_bundle.as_deref().unwrap_or(""),
        body.install_frp_certs.unwrap_or(true),
        frp_dir,
    );
    let left = budget.saturating_sub(started.elapsed());
    let result = match tokio::time::timeout(left, work).await {
        Ok(r) => r,
        Err(_) => Err(timed_out()),
    };
    if !was_running {
        restore_stopped(engine, &container).await;
    }
    result.map(|()| ControlReply::NoContent)
}

async fn install_into(
    engine: &Engine<'_>,
    container: &str,
    was_running: bool,
    bundle: &str,
    frp: bool,
    frp_dir: &Path,
) -> Result<(), DockerError> {
    if !was_running {
        let reply = engine
            .post_empty(&format!("/containers/{container}/start"))
            .await?;
        if !matches!(reply.status.as_u16(), 204 | 304) {
            return Err(reply.unexpected(format!("start of '{container}'")));
        }
    }
    if frp {
        install_frp(engine, container, frp_dir).await?;
    }
    let os_release = exec(engine, container, &["cat", "/etc/os-release"]).await?;
    if os_release.exit_code != 0 {
        return Err(DockerError::Internal(format!(
            "reading /etc/os-release in '{container}' failed (exit {})",
            os_release.exit_code
        )));
    }
    if bundle.is_empty() {
        return Ok(());
    }
    let Some(family) = OsFamily::detect(&os_release.output) else {
        tracing::warn!(
            container,
            "unknown distribution; system certificates not installed"
        );
        return Ok(());
    };
    let certs = pem_certificates(bundle);
    if certs.is_empty() {
        tracing::warn!(container, "system_certs_bundle holds no PEM certificate");
        return Ok(());
    }
    let dir = family.ca_dir();
    run_checked(engine, container, &["mkdir", "-p", dir]).await?;
    let files: Vec<(String, Vec<u8>)> = certs
        .iter()
        .enumerate()
        .map(|(i, pem)| {
            (
                format!("{}/custom_ca_cert_{i}.crt", dir.trim_start_matches('/')),
                pem.as_bytes().to_vec(),
            )
        })
        .collect();
    upload(engine, container, &files).await?;
    let update = exec(engine, container, family.update_command()).await?;
    if update.exit_code != 0 {
        tracing::warn!(container, exit = update.exit_code, output = %update.output, "CA store update failed");
    }
    Ok(())
}

async fn install_frp(
    engine: &Engine<'_>,
    container: &str,
    frp_dir: &Path,
) -> Result<(), DockerError> {
    let mut files = Vec::new();
    for name in FRP_FILES {
        match tokio::fs::read(frp_dir.join(name)).await {
            Ok(bytes) => files.push((format!("certs/frp/{name}"), bytes)),
            Err(e) => {
                tracing::info!(dir = %frp_dir.display(), file = name, error = %e, "FRP certificates not installed (incomplete set)");
                return Ok(());
            }
        }
    }
    run_checked(engine, container, &["mkdir", "-p", "/certs/frp"]).await?;
    upload(engine, container, &files).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OsFamily {
    Alpine,
    Debian,
    RedHat,
}

impl OsFamily {
    /// First match wins, in the reference's order.
    fn detect(os_release: &str) -> Option<OsFamily> {
        let text = os_release.to_ascii_lowercase();
        if text.contains("alpine") {
            Some(OsFamily::Alpine)
        } else if text.contains("debian") || text.contains("ubuntu") {
            Some(OsFamily::Debian)
        } else if ["centos", "almalinux", "rhel", "fedora"]
            .iter()
            .any(|n| text.contains(n))
        {
            Some(OsFamily::RedHat)
        } else {
            None
        }
    }

    fn ca_dir(self) -> &'static str {
        match self {
            OsFamily::Alpine | OsFamily::Debian => "/usr/local/share/ca-certificates",
            OsFamily::RedHat => "/etc/pki/ca-trust/source/anchors",
        }
    }

    fn update_command(self) -> &'static [&'static str] {
        match self {
            OsFamily::Alpine | OsFamily::Debian => &["update-ca-certificates"],
            OsFamily::RedHat => &["update-ca-trust", "extract"],
        }
    }
}

fn pem_certificates(bundle: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        out.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    out
}

struct ExecResult {
    exit_code: i64,
    output: String,
}

async fn exec(
    engine: &Engine<'_>,
    container: &str,
    cmd: &[&str],
) -> Result<ExecResult, DockerError> {
    let created = engine
        .post_json(
            &format!("/containers/{container}/exec"),
            &json!({"AttachStdout": true, "AttachStderr": true, "Cmd": cmd}),
        )
        .await?;
    let id = match created.status.as_u16() {
        201 => created
            .json()
            .and_then(|v| v.get("Id").and_then(|i| i.as_str()).map(str::to_owned)),
        _ => None,
    }
    .ok_or_else(|| created.unexpected(format!("exec create in '{container}'")))?;
    let started = engine
        .post_json(
            &format!("/exec/{id}/start"),
            &json!({"Detach": false, "Tty": false}),
        )
        .await?;
    if started.status.as_u16() != 200 {
        return Err(started.unexpected(format!("exec start in '{container}'")));
    }
    // The multiplexed frame headers stay in; the text is only searched and logged.
    let output = String::from_utf8_lossy(&started.body).into_owned();
    let inspect = engine.get(&format!("/exec/{id}/json")).await?;
    let exit_code = inspect
        .json()
        .and_then(|v| v.get("ExitCode").and_then(|c| c.as_i64()))
        .unwrap_or(-1);
    Ok(ExecResult { exit_code, output })
}

async fn run_checked(
    engine: &Engine<'_>,
    container: &str,
    cmd: &[&str],
) -> Result<(), DockerError> {
    let r = exec(engine, container, cmd).await?;
    if r.exit_code == 0 {
        Ok(())
    } else {
        Err(DockerError::Internal(format!(
            "'{}' failed in '{container}' (exit {})",
            cmd.join(" "),
            r.exit_code
        )))
    }
}

async fn upload(
    engine: &Engine<'_>,
    container: &str,
    files: &[(String, Vec<u8>)],
) -> Result<(), DockerError> {
    let archive =
        tar_of(files).map_err(|e| DockerError::Internal(format!("building the archive: {e}")))?;
    let reply = engine
        .put_tar(&format!("/containers/{container}/archive?path=/"), archive)
        .await?;
    if reply.status.as_u16() == 200 {
        Ok(())
    } else {
        Err(reply.unexpected(format!("archive upload to '{container}'")))
    }
}

fn tar_of(files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let mtime = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, data.as_slice())?;
    }
    builder.into_inner()
}

async fn restore_stopped(engine: &Engine<'_>, container: &str) {
    let path = format!("/containers/{container}/stop");
    let stop = engine.post_empty(&path);
    match tokio::time::timeout(RESTORE_STOP_BUDGET, stop).await {
        Ok(Ok(r)) if matches!(r.status.as_u16(), 204 | 304 | 404) => {}
        Ok(Ok(r)) => tracing::warn!(
            container,
            status = r.status.as_u16(),
            "could not stop the container again"
        ),
        Ok(Err(e)) => tracing::warn!(container, error = %e, "could not stop the container again"),
        Err(_) => tracing::warn!(container, "stopping the container again timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_family_detection_follows_the_reference_order() {
        assert_eq!(OsFamily::detect("ID=alpine"), Some(OsFamily::Alpine));
        assert_eq!(
            OsFamily::detect("NAME=\"Debian GNU/Linux\""),
            Some(OsFamily::Debian)
        );
        assert_eq!(
            OsFamily::detect("ID=ubuntu\nID_LIKE=debian"),
            Some(OsFamily::Debian)
        );
        assert_eq!(OsFamily::detect("ID=\"almalinux\""), Some(OsFamily::RedHat));
        assert_eq!(OsFamily::detect("ID=arch"), None);
        assert_eq!(
            OsFamily::RedHat.ca_dir(),
            "/etc/pki/ca-trust/source/anchors"
        );
    }

    #[test]
    fn bundles_split_into_pem_blocks() {
        let bundle = "junk\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\nmid\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nunterminated";
        let certs = pem_certificates(bundle);
        assert_eq!(certs.len(), 2);
        assert!(certs[0].contains("AAA") && !certs[0].contains("junk"));
        assert!(certs[1].contains("BBB") && certs[1].ends_with("-----END CERTIFICATE-----\n"));
        assert!(pem_certificates("no certificates").is_empty());
    }

    #[test]
    fn archives_hold_regular_files_owned_by_root() {
        let tar = tar_of(&[("certs/frp/ca.crt".into(), b"x".to_vec())]).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("certs/frp/ca.crt"));
        assert_eq!(entry.header().mode().unwrap(), 0o644);
        assert_eq!(entry.header().uid().unwrap(), 0);
        assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
    }
}
