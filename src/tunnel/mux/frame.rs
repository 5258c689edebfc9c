//! The 12-byte yamux frame header and its constants.

pub(super) const VERSION: u8 = 0;
pub(super) const TYPE_DATA: u8 = 0;
pub(super) const TYPE_WINDOW_UPDATE: u8 = 1;
pub(super) const TYPE_PING: u8 = 2;
pub(super) const TYPE_GO_AWAY: u8 = 3;

pub(super) const FLAG_SYN: u16 = 0x1;
pub(super) const FLAG_ACK: u16 = 0x2;
pub(super) const FLAG_FIN: u16 = 0x4;
pub(super) const FLAG_RST: u16 = 0x8;

/// Protocol constant: every stream starts with this much credit in each direction.
pub const INITIAL_WINDOW: u32 = 256 * 1024;
/// frp raises the per-stream window to 6 MiB on both sides.
pub const MAX_WINDOW: u32 = 6 * 1024 * 1024;

pub(super) const GO_AWAY_PROTOCOL_ERROR: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub ty: u8,
    pub flags: u16,
    pub stream: u32,
    pub length: u32,
}

impl Header {
    pub(super) fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = VERSION;
        b[1] = self.ty;
        b[2..4].copy_from_slice(&self.flags.to_be_bytes());
        b[4..8].copy_from_slice(&self.stream.to_be_bytes());
        b[8..12].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// `None` for an unknown version or type (fatal for the session).
    pub(super) fn decode(b: &[u8; 12]) -> Option<Header> {
        if b[0] != VERSION || b[1] > TYPE_GO_AWAY {
            return None;
        }
        Some(Header {
            ty: b[1],
            flags: u16::from_be_bytes([b[2], b[3]]),
            stream: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            length: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frpc_first_frame_decodes() {
        let raw = [0, 1, 0, 1, 0, 0, 0, 1, 0, 0x5C, 0, 0];
        let h = Header::decode(&raw).unwrap();
        assert_eq!(h.ty, TYPE_WINDOW_UPDATE);
        assert_eq!(h.flags, FLAG_SYN);
        assert_eq!(h.stream, 1);
        assert_eq!(h.length, MAX_WINDOW - INITIAL_WINDOW);
        assert_eq!(h.encode(), raw);
        assert!(Header::decode(&[1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]).is_none());
        assert!(Header::decode(&[0, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]).is_none());
    }
}
