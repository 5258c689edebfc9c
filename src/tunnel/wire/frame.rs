//! Message framing: one type byte, a signed 64-bit big-endian length, a JSON body of at most
//! 10 240 bytes. Reads are exact (no read-ahead), so a caller can switch the underlying stream
//! to encryption right after a message without losing bytes.

use super::messages::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Go's reader refuses larger bodies; we enforce the same bound so a peer cannot make us
/// allocate more.
pub(crate) const MAX_BODY: usize = 10_240;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("message body length {0} out of range")]
    Length(i64),
    #[error("unknown message type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("invalid message body: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes one complete frame held in `buf` (the fuzz target's entry point).
pub fn decode(buf: &[u8]) -> Result<Message, FrameError> {
    if buf.len() < 9 {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let len = i64::from_be_bytes(buf[1..9].try_into().expect("8 bytes"));
    if len < 0 || len as u64 > MAX_BODY as u64 || buf.len() - 9 != len as usize {
        return Err(FrameError::Length(len));
    }
    Message::from_parts(buf[0], &buf[9..])
}

pub fn encode(msg: &Message) -> Vec<u8> {
    let (ty, body) = msg.to_parts();
    let mut out = Vec::with_capacity(9 + body.len());
    out.push(ty);
    out.extend_from_slice(&(body.len() as i64).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

pub async fn read_msg<R: AsyncRead + Unpin>(r: &mut R) -> Result<Message, FrameError> {
    let mut head = [0u8; 9];
    r.read_exact(&mut head).await?;
    let len = i64::from_be_bytes(head[1..9].try_into().expect("8 bytes"));
    if len < 0 || len as u64 > MAX_BODY as u64 {
        return Err(FrameError::Length(len));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).await?;
    Message::from_parts(head[0], &body)
}

/// One write call per message, as frpc does (one mux frame when it fits).
pub async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message) -> std::io::Result<()> {
    w.write_all(&encode(msg)).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::wire::messages::*;

    #[test]
    fn req_work_conn_layout_matches_spec() {
        assert_eq!(
            encode(&Message::ReqWorkConn(ReqWorkConn {})),
            [0x72, 0, 0, 0, 0, 0, 0, 0, 2, b'{', b'}']
        );
    }

    #[tokio::test]
    async fn roundtrip_and_limits() {
        let msg = Message::NewProxy(NewProxy {
            proxy_name: "app1".into(),
            proxy_type: "tcp".into(),
            remote_port: 23000,
            ..Default::default()
        });
        let bytes = encode(&msg);
        let mut r = &bytes[..];
        assert_eq!(read_msg(&mut r).await.unwrap(), msg);
        assert_eq!(decode(&bytes).unwrap(), msg);

        let mut big = vec![b'p'];
        big.extend_from_slice(&(MAX_BODY as i64 + 1).to_be_bytes());
        assert!(matches!(
            read_msg(&mut &big[..]).await,
            Err(FrameError::Length(_))
        ));
        let mut neg = vec![b'p'];
        neg.extend_from_slice(&(-1i64).to_be_bytes());
        assert!(matches!(
            read_msg(&mut &neg[..]).await,
            Err(FrameError::Length(-1))
        ));
        let unknown = [b'Z', 0, 0, 0, 0, 0, 0, 0, 2, b'{', b'}'];
        assert!(matches!(
            decode(&unknown),
            Err(FrameError::UnknownType(b'Z'))
        ));
        let bad = [b'p', 0, 0, 0, 0, 0, 0, 0, 1, b'{'];
        assert!(matches!(decode(&bad), Err(FrameError::Json(_))));
    }

    #[test]
    fn go_style_login_decodes_with_missing_fields() {
        let body = br#"{"version":"0.65.0","os":"linux","arch":"arm64","privilege_key":"ab","timestamp":1795482719,"metas":{"token":"SHAREDKEY"},"client_spec":{},"pool_count":1}"#;
        let Message::Login(l) = Message::from_parts(b'o', body).unwrap() else {
            panic!("not a login")
        };
        assert_eq!(l.metas.get("token").map(String::as_str), Some("SHAREDKEY"));
        assert_eq!(l.pool_count, 1);
        assert_eq!(l.run_id, "");
    }
}
