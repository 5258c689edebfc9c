//! Port 24000 → the local Docker socket, for the pass-through and the wrappers alike.

use crate::contract::ports::LOCAL_ENGINE_PORT;
use crate::upstream::{BoxedIo, LocalDialer};
use futures_util::future::BoxFuture;
use std::io;
use std::path::PathBuf;

/// Connects to the socket path anew on every dial, so a restarted daemon or a recreated socket
/// file is picked up by the next request (contract §7 #3/#4: no sticky "engine down" state).
pub(crate) struct SocketDialer {
    pub path: PathBuf,
}

impl LocalDialer for SocketDialer {
    fn dial(&self, port: u16) -> Option<BoxFuture<'static, io::Result<BoxedIo>>> {
        if port != LOCAL_ENGINE_PORT {
            return None;
        }
        let path = self.path.clone();
        Some(Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(&path)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            Ok(BoxedIo::new(stream))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_port_24000_is_claimed_and_errors_name_the_socket() {
        let d = SocketDialer {
            path: "/nonexistent/harp-test.sock".into(),
        };
        assert!(d.dial(24001).is_none());
        let err = match d.dial(24000).unwrap().await {
            Err(e) => e,
            Ok(_) => panic!("dial to a missing socket succeeded"),
        };
        assert!(err.to_string().contains("/nonexistent/harp-test.sock"));
    }
}
