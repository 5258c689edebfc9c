//! HTTP client for Nextcloud's two HaRP endpoints (contract §3.1): pooled keep-alive
//! connections, 25 s total / 5 s connect timeouts, system CA store, redirects followed,
//! no proxy variables, no cookie jar.

use super::record::{parse_record, ExAppRecord, RecordError};
use super::{UserInfo, UserLookup};
use crate::contract::headers::{HARP_SHARED_KEY, SHARED_KEY_NAME};
use crate::security::SharedKey;
use http::{HeaderMap, HeaderValue};
use std::time::Duration;

const TOTAL_TIMEOUT: Duration = Duration::from_secs(25);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_IDLE_CONNECTIONS: usize = 100;

/// Headers never forwarded to user-info: the client's Host and body framing, and hop-by-hop ones.
const NOT_FORWARDED: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
    "expect",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    SHARED_KEY_NAME,
];

#[derive(Debug, thiserror::Error)]
pub enum NextcloudError {
    #[error("cannot build the Nextcloud HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What exapp-meta said.
#[derive(Debug)]
pub(crate) enum MetaFetch {
    Found(ExAppRecord),
    NotFound,
    Error(String),
}

#[derive(Clone)]
pub struct NextcloudClient {
    http: reqwest::Client,
    meta_url: String,
    user_url: String,
    key: SharedKey,
}

impl NextcloudClient {
    pub fn new(base: &str, key: SharedKey) -> Result<NextcloudClient, NextcloudError> {
        let http = reqwest::Client::builder()
            .timeout(TOTAL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS)
            .tcp_nodelay(true)
            .no_proxy()
            .build()?;
        Ok(NextcloudClient {
            http,
            meta_url: format!("{base}/index.php/apps/app_api/harp/exapp-meta"),
            user_url: format!("{base}/index.php/apps/app_api/harp/user-info"),
            key,
        })
    }

    pub(crate) async fn exapp_meta(&self, app_lower: &str) -> MetaFetch {
        let response = self
            .http
            .get(&self.meta_url)
            .query(&[("appId", app_lower)])
            .header(HARP_SHARED_KEY, self.key.expose())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return MetaFetch::Error(format!("exapp-meta request failed: {}", describe(&e)))
            }
        };
        let status = response.status();
        if status == 401 || status == 404 {
            return MetaFetch::NotFound;
        }
        if !status.is_success() {
            return MetaFetch::Error(format!("exapp-meta answered {status}"));
        }
        match response.bytes().await {
            Ok(body) => match parse_record(&body) {
                Ok(record) => MetaFetch::Found(record),
                Err(RecordError::NotJson) => {
                    MetaFetch::Error("exapp-meta answered with invalid JSON".into())
                }
                Err(e) => MetaFetch::Error(format!("exapp-meta answer is invalid: {e}")),
            },
            Err(e) => MetaFetch::Error(format!("exapp-meta body failed: {}", describe(&e))),
        }
    }

    pub(crate) async fn user_info(
        &self,
        app_lower: &str,
        client_headers: &HeaderMap,
    ) -> UserLookup {
        let mut headers = HeaderMap::with_capacity(client_headers.len() + 1);
        for (name, value) in client_headers {
            if !NOT_FORWARDED.contains(&name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(self.key.expose()) {
            headers.insert(HARP_SHARED_KEY, v);
        }
        let response = self
            .http
            .get(&self.user_url)
            .query(&[("appId", app_lower)])
            .headers(headers)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return UserLookup::Failed(format!("user-info request failed: {}", describe(&e)))
            }
        };
        let status = response.status();
        if status.is_client_error() {
            return UserLookup::Anonymous;
        }
        if !status.is_success() {
            return UserLookup::Failed(format!("user-info answered {status}"));
        }
        match response.bytes().await {
            Ok(body) => parse_user(&body).map_or_else(UserLookup::Failed, UserLookup::User),
            Err(e) => UserLookup::Failed(format!("user-info body failed: {}", describe(&e))),
        }
    }
}

fn parse_user(body: &[u8]) -> Result<UserInfo, String> {
    let doc: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| "user-info answered with invalid JSON".to_string())?;
    let level = doc
        .get("access_level")
        .and_then(serde_json::Value::as_u64)
        .and_then(|l| u8::try_from(l).ok())
        .ok_or("user-info answer lacks a valid access_level")?;
    let user_id = match doc.get("user_id") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err("user-info user_id is not a string".into()),
    };
    Ok(UserInfo {
        user_id,
        access_level: level,
    })
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        // reqwest errors carry the URL, which holds nothing secret (only the app id).
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_documents() {
        assert_eq!(
            parse_user(br#"{"user_id":"alice","access_level":1}"#),
            Ok(UserInfo {
                user_id: "alice".into(),
                access_level: 1
            })
        );
        assert_eq!(parse_user(br#"{"access_level":0}"#).unwrap().user_id, "");
        assert!(parse_user(br#"{"user_id":"a"}"#).is_err());
        assert!(parse_user(b"<html>").is_err());
    }
}
