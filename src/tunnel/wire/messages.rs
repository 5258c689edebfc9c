//! The JSON bodies of the FRP messages a tcp-proxy session uses, with Go `encoding/json`
//! conventions: every field optional on input, zero values omitted on output (except
//! `client_spec`, which Go always writes). Out-of-scope message types are decode errors.

use super::frame::FrameError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}
fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Login {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub arch: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub privilege_key: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub timestamp: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metas: BTreeMap<String, String>,
    pub client_spec: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub pool_count: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginResp {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewProxy {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_type: String,
    #[serde(skip_serializing_if = "is_false")]
    pub use_encryption: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub use_compression: bool,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub remote_port: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewProxyResp {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_addr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloseProxy {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewWorkConn {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub privilege_key: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub timestamp: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReqWorkConn {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StartWorkConn {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub src_addr: String,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub src_port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dst_addr: String,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub dst_port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ping {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub privilege_key: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub timestamp: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pong {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Login(Login),
    LoginResp(LoginResp),
    NewProxy(NewProxy),
    NewProxyResp(NewProxyResp),
    CloseProxy(CloseProxy),
    NewWorkConn(NewWorkConn),
    ReqWorkConn(ReqWorkConn),
    StartWorkConn(StartWorkConn),
    Ping(Ping),
    Pong(Pong),
}

impl Message {
    pub fn from_parts(ty: u8, body: &[u8]) -> Result<Message, FrameError> {
        Ok(match ty {
            b'o' => Message::Login(serde_json::from_slice(body)?),
            b'1' => Message::LoginResp(serde_json::from_slice(body)?),
            b'p' => Message::NewProxy(serde_json::from_slice(body)?),
            b'2' => Message::NewProxyResp(serde_json::from_slice(body)?),
            b'c' => Message::CloseProxy(serde_json::from_slice(body)?),
            b'w' => Message::NewWorkConn(serde_json::from_slice(body)?),
            b'r' => Message::ReqWorkConn(serde_json::from_slice(body)?),
            b's' => Message::StartWorkConn(serde_json::from_slice(body)?),
            b'h' => Message::Ping(serde_json::from_slice(body)?),
            b'4' => Message::Pong(serde_json::from_slice(body)?),
            other => return Err(FrameError::UnknownType(other)),
        })
    }

    pub fn to_parts(&self) -> (u8, Vec<u8>) {
        let json = |v: Result<Vec<u8>, serde_json::Error>| v.expect("plain structs serialise");
        match self {
            Message::Login(m) => (b'o', json(serde_json::to_vec(m))),
            Message::LoginResp(m) => (b'1', json(serde_json::to_vec(m))),
            Message::NewProxy(m) => (b'p', json(serde_json::to_vec(m))),
            Message::NewProxyResp(m) => (b'2', json(serde_json::to_vec(m))),
            Message::CloseProxy(m) => (b'c', json(serde_json::to_vec(m))),
            Message::NewWorkConn(m) => (b'w', json(serde_json::to_vec(m))),
            Message::ReqWorkConn(m) => (b'r', json(serde_json::to_vec(m))),
            Message::StartWorkConn(m) => (b's', json(serde_json::to_vec(m))),
            Message::Ping(m) => (b'h', json(serde_json::to_vec(m))),
            Message::Pong(m) => (b'4', json(serde_json::to_vec(m))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Message::Login(_) => "Login",
            Message::LoginResp(_) => "LoginResp",
            Message::NewProxy(_) => "NewProxy",
            Message::NewProxyResp(_) => "NewProxyResp",
            Message::CloseProxy(_) => "CloseProxy",
            Message::NewWorkConn(_) => "NewWorkConn",
            Message::ReqWorkConn(_) => "ReqWorkConn",
            Message::StartWorkConn(_) => "StartWorkConn",
            Message::Ping(_) => "Ping",
            Message::Pong(_) => "Pong",
        }
    }
}
