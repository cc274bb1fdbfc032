//! TLS 1.3 records after the upgrade, framed and protected here with the
//! traffic keys rustls hands over once the session is established (as it
//! does for kernel TLS), so that an idle connection holds the two keys and
//! their sequence numbers and no buffer (RFC 8446 section 5).
//!
//! The keys are taken right after the 101: a client may not send before it
//! has the 101 (RFC 6455 section 4.1), so rustls then holds no record of
//! the client's in part. A client that sends anyway, in a record that
//! arrived only in part, fails its first record here and is disconnected.
//!
//! Not followed: a KeyUpdate from the client (the next keys are not handed
//! over) ends the connection, as does any handshake or alert message other
//! than close_notify.

use std::io;

use bytes::BytesMut;
use ring::aead;
use rustls::ConnectionTrafficSecrets;

/// A record's header: type, legacy version, length.
pub const HEADER: usize = 5;
/// The most plaintext in one record.
pub const MAX_FRAGMENT: usize = 1 << 14;
/// The longest protected record body (plaintext, type, padding, tag).
pub const MAX_CIPHERTEXT: usize = MAX_FRAGMENT + 256;
const TAG: usize = 16;

const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const LEGACY_VERSION: [u8; 2] = [3, 3];
const CLOSE_NOTIFY: u8 = 0;
const WARNING: u8 = 1;

/// One direction's key and record count.
struct Direction {
    key: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl Direction {
    fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Option<Self> {
        let (alg, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return None,
        };
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, key.as_ref()).ok()?);
        let iv: [u8; aead::NONCE_LEN] = iv.as_ref().try_into().ok()?;
        Some(Direction { key, iv, seq })
    }

    /// The next record's nonce: the IV xored with the sequence number.
    fn nonce(&mut self) -> io::Result<aead::Nonce> {
        let mut nonce = self.iv;
        for (n, s) in nonce[aead::NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *n ^= s;
        }
        self.seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| invalid("TLS record sequence number exhausted"))?;
        Ok(aead::Nonce::assume_unique_for_key(nonce))
    }
}

fn invalid(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// The record layer of an established TLS 1.3 connection.
pub struct Records {
    rx: Direction,
    tx: Direction,
    /// The client sent close_notify.
    closed: bool,
}

impl Records {
    /// From the secrets rustls extracted; `None` for a cipher suite this
    /// layer does not know.
    pub fn new(secrets: rustls::ExtractedSecrets) -> Option<Self> {
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        Some(Records {
            rx: Direction::new(rx_seq, rx)?,
            tx: Direction::new(tx_seq, tx)?,
            closed: false,
        })
    }

    /// Whether the client has closed (close_notify).
    pub fn peer_closed(&self) -> bool {
        self.closed
    }

    /// Decrypts the complete records at the start of `raw` in place and
    /// appends their plaintext to `out`. Returns how many bytes of `raw`
    /// were taken (a record cut short at its end is left) and how much
    /// plaintext was added.
    pub fn open(&mut self, raw: &mut [u8], out: &mut BytesMut) -> io::Result<(usize, usize)> {
        let (mut at, mut added) = (0, 0);
        while !self.closed {
            let Some(header) = raw.get(at..at + HEADER) else {
                break;
            };
            let typ = header[0];
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if len > MAX_CIPHERTEXT {
                return Err(invalid("TLS record too long"));
            }
            let end = at + HEADER + len;
            if raw.len() < end {
                break;
            }
            let (head, rest) = raw[at..end].split_at_mut(HEADER);
            at = end;
            // (A change_cipher_spec record after the handshake is
            // unexpected too: RFC 8446 section 5.)
            if typ != APPLICATION_DATA || len <= TAG {
                return Err(invalid("unexpected TLS record"));
            }
            let nonce = self.rx.nonce()?;
            let plain = self
                .rx
                .key
                .open_in_place(nonce, aead::Aad::from(&head[..]), rest)
                .map_err(|_| invalid("TLS record does not decrypt"))?;
            // The inner type is the last byte that is not padding.
            let Some(last) = plain.iter().rposition(|b| *b != 0) else {
                return Err(invalid("TLS record without a content type"));
            };
            let content = &plain[..last];
            match plain[last] {
                APPLICATION_DATA if content.len() <= MAX_FRAGMENT => {
                    out.extend_from_slice(content);
                    added += content.len();
                }
                // close_notify, whatever level it names (TLS 1.3 ignores
                // the level).
                ALERT if content.len() == 2 && content[1] == CLOSE_NOTIFY => self.closed = true,
                ALERT => return Err(invalid("TLS alert from the client")),
                APPLICATION_DATA => return Err(invalid("TLS record over the fragment limit")),
                _ => return Err(invalid("TLS handshake message after the upgrade")),
            }
        }
        Ok((at, added))
    }

    /// Appends `plain` to `out` as application data records.
    pub fn seal(&mut self, plain: &[u8], out: &mut BytesMut) -> io::Result<()> {
        for chunk in plain.chunks(MAX_FRAGMENT) {
            self.seal_one(chunk, APPLICATION_DATA, out)?;
        }
        Ok(())
    }

    /// Appends the close_notify alert to `out`.
    pub fn seal_close_notify(&mut self, out: &mut BytesMut) -> io::Result<()> {
        self.seal_one(&[WARNING, CLOSE_NOTIFY], ALERT, out)
    }

    fn seal_one(&mut self, plain: &[u8], typ: u8, out: &mut BytesMut) -> io::Result<()> {
        let body = plain.len() + 1 + TAG;
        let len = u16::try_from(body).map_err(|_| invalid("TLS record too long"))?;
        let start = out.len();
        out.reserve(HEADER + body);
        out.extend_from_slice(&[APPLICATION_DATA, LEGACY_VERSION[0], LEGACY_VERSION[1]]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(plain);
        out.extend_from_slice(&[typ]);
        let nonce = self.tx.nonce()?;
        let (head, rest) = out[start..].split_at_mut(HEADER);
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(nonce, aead::Aad::from(&head[..]), rest)
            .map_err(|_| invalid("TLS record does not encrypt"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }
}
