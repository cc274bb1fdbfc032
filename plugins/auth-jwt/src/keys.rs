//! Verification keys and the key set a token is checked against.
//!
//! A key knows its kind (HMAC, RSA, EC on one curve, Ed25519), which decides
//! the algorithms it can verify, and, from a JWKS, its `kid` and the `alg`
//! it states. Three sources give a [`KeySet`]: the shared secret, a PEM file
//! of public keys ([`KeySet::from_pem_file`]) and a JWK set document
//! ([`KeySet::from_jwks`], fetched by [`crate::jwks`]).
//!
//! Keys are public (or, for the secret, never shown): `Debug` shows only
//! their kind, `kid` and `alg`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::options::algorithm_name;

/// The elliptic curves ES256 and ES384 use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

/// What a key is, which decides what it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The shared secret: HS256/384/512.
    Hmac,
    /// RS256/384/512 and PS256/384/512.
    Rsa,
    /// ES256 (P-256) or ES384 (P-384).
    Ec(Curve),
    /// EdDSA.
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind verifies signatures of `alg`. An EC key
    /// verifies only the algorithm of its curve.
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Hmac => matches!(alg, HS256 | HS384 | HS512),
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::Ec(Curve::P256) => alg == ES256,
            KeyKind::Ec(Curve::P384) => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }

    /// For errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Hmac => "HMAC",
            KeyKind::Rsa => "RSA",
            KeyKind::Ec(Curve::P256) => "EC P-256",
            KeyKind::Ec(Curve::P384) => "EC P-384",
            KeyKind::Ed25519 => "Ed25519",
        }
    }
}

/// One verification key.
pub struct Key {
    /// The JWK's `kid`; PEM keys and the secret have none.
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's own `alg`, when it states one: then the key verifies only
    /// that algorithm.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl Key {
    /// Whether this key may verify a token signed with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &self.kind.name())
            .field("alg", &self.alg.map(algorithm_name))
            .finish_non_exhaustive()
    }
}

/// The keys a token is checked against.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// What a [`KeySet::lookup`] found for a token.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The keys to try, in order (at least one).
    Keys(Vec<&'a Key>),
    /// No key has the token's `kid` or, for a token without one, none fits
    /// its algorithm: a JWKS may know it after a refresh.
    Unknown,
    /// Keys with the token's `kid` exist, but none fits its algorithm.
    Mismatch,
}

impl KeySet {
    /// The shared secret as the only key.
    pub fn secret(secret: &[u8]) -> Self {
        Self {
            keys: vec![Key {
                kid: None,
                kind: KeyKind::Hmac,
                alg: None,
                key: DecodingKey::from_secret(secret),
            }],
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// How many keys can verify at least one of `algorithms`.
    pub fn usable_for(&self, algorithms: &[Algorithm]) -> usize {
        self.keys
            .iter()
            .filter(|k| algorithms.iter().any(|alg| k.fits(*alg)))
            .count()
    }

    /// The keys a token signed with `alg` is tried with: the ones with its
    /// `kid` when it has one (pass `None` for a set without kids, whose
    /// keys are all tried), else every key that fits `alg`.
    pub fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        let Some(kid) = kid else {
            let keys: Vec<&Key> = self.keys.iter().filter(|k| k.fits(alg)).collect();
            return if keys.is_empty() {
                Lookup::Unknown
            } else {
                Lookup::Keys(keys)
            };
        };
        let mut named = self
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .peekable();
        if named.peek().is_none() {
            return Lookup::Unknown;
        }
        let keys: Vec<&Key> = named.filter(|k| k.fits(alg)).collect();
        if keys.is_empty() {
            Lookup::Mismatch
        } else {
            Lookup::Keys(keys)
        }
    }

    /// Reads a PEM file of public keys: one or more blocks of `PUBLIC KEY`
    /// (SPKI: RSA, EC P-256 / P-384 or Ed25519) or `RSA PUBLIC KEY`
    /// (PKCS#1). Text between blocks is ignored; private keys and
    /// certificates are refused. The error names the file, never its
    /// contents.
    pub fn from_pem_file(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let blocks = pem_blocks(&text).map_err(|e| format!("{shown}: {e}"))?;
        if blocks.is_empty() {
            return Err(format!("{shown}: no PEM block in it"));
        }
        let mut keys = Vec::with_capacity(blocks.len());
        for (n, (label, block)) in blocks.into_iter().enumerate() {
            let key = pem_key(label, block).map_err(|e| format!("{shown}: key {}: {e}", n + 1))?;
            keys.push(key);
        }
        Ok(Self { keys })
    }

    /// Reads a JWK set document (`{"keys": [...]}`). Keys that cannot
    /// verify signatures here are skipped, each with the reason (for the
    /// log): encryption keys (`use = "enc"`, or `key_ops` without
    /// `verify`), symmetric (`oct`) keys, unsupported curves or `alg`s,
    /// and malformed ones. An error names what is wrong with the document,
    /// never its contents.
    pub fn from_jwks(body: &[u8]) -> Result<(Self, Vec<String>), String> {
        #[derive(Deserialize)]
        struct Document<'a> {
            #[serde(borrow)]
            keys: Vec<&'a RawValue>,
        }
        let document: Document<'_> = serde_json::from_slice(body).map_err(|e| {
            if e.is_data() {
                "not a JWK set (it needs a \"keys\" array)".to_string()
            } else {
                format!("invalid JSON ({e})")
            }
        })?;
        let mut keys = Vec::with_capacity(document.keys.len());
        let mut skipped = Vec::new();
        for (n, raw) in document.keys.into_iter().enumerate() {
            match serde_json::from_str::<Jwk>(raw.get()) {
                Ok(jwk) => match jwk_key(&jwk) {
                    Ok(key) => keys.push(key),
                    Err(why) => skipped.push(format!(
                        "key {} (kid {:?}): {why}",
                        n + 1,
                        jwk.common.key_id.as_deref().unwrap_or("")
                    )),
                },
                Err(_) => skipped.push(format!(
                    "key {}: not a supported JWK (unknown kty, crv or alg, or a missing field)",
                    n + 1
                )),
            }
        }
        Ok((Self { keys }, skipped))
    }
}

/// The PEM blocks of `text`: (label, the whole block from `-----BEGIN` to
/// the end of its `-----END ...-----` line).
fn pem_blocks(text: &str) -> Result<Vec<(&str, &str)>, String> {
    const BEGIN: &str = "-----BEGIN ";
    let mut blocks = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let label_end = after
            .find("-----")
            .ok_or_else(|| "a -----BEGIN line without its closing dashes".to_string())?;
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let end = rest[start..]
            .find(&end_marker)
            .ok_or_else(|| format!("a {label} block without its -----END line"))?;
        let block_end = start + end + end_marker.len();
        blocks.push((label, &text[offset + start..offset + block_end]));
        offset += block_end;
        rest = &rest[block_end..];
    }
    Ok(blocks)
}

/// The start (base64 of the fixed DER prefix) of the SPKI of an EC P-256
/// key: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING 04.. }.
const SPKI_P256: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE";
/// The same for P-384 (secp384r1).
const SPKI_P384: &str = "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE";
/// The same for Ed25519.
const SPKI_ED25519: &str = "MCowBQYDK2VwAyEA";

/// One PEM block as a key. jsonwebtoken parses the DER; the kind of a
/// `PUBLIC KEY` is told by its fixed prefix (DER is canonical, so an EC
/// key's curve, which jsonwebtoken does not report, is in it).
fn pem_key(label: &str, block: &str) -> Result<Key, String> {
    let parsed = match label {
        "RSA PUBLIC KEY" => DecodingKey::from_rsa_pem(block.as_bytes()).map(|k| (KeyKind::Rsa, k)),
        "PUBLIC KEY" => {
            let base64: String = block
                .lines()
                .filter(|line| !line.starts_with("-----"))
                .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
                .take(64)
                .collect();
            if base64.starts_with(SPKI_P256) {
                DecodingKey::from_ec_pem(block.as_bytes()).map(|k| (KeyKind::Ec(Curve::P256), k))
            } else if base64.starts_with(SPKI_P384) {
                DecodingKey::from_ec_pem(block.as_bytes()).map(|k| (KeyKind::Ec(Curve::P384), k))
            } else if base64.starts_with(SPKI_ED25519) {
                DecodingKey::from_ed_pem(block.as_bytes()).map(|k| (KeyKind::Ed25519, k))
            } else {
                DecodingKey::from_rsa_pem(block.as_bytes()).map(|k| (KeyKind::Rsa, k))
            }
        }
        "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
            return Err(
                "is a private key: give the public key only (openssl pkey -in key.pem -pubout)"
                    .to_string(),
            )
        }
        "CERTIFICATE" => {
            return Err(
                "certificates are not supported: give the public key (openssl x509 -in \
                 cert.pem -pubkey -noout)"
                    .to_string(),
            )
        }
        other => return Err(format!("unsupported PEM block `{other}`")),
    };
    let (kind, key) = parsed.map_err(|_| {
        "not a supported public key (RSA, EC P-256 or P-384, or Ed25519)".to_string()
    })?;
    Ok(Key {
        kid: None,
        kind,
        alg: None,
        key,
    })
}

/// One JWK as a key, or why it is skipped.
fn jwk_key(jwk: &Jwk) -> Result<Key, &'static str> {
    let common = &jwk.common;
    match &common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("not a signature key (use)"),
    }
    if let Some(ops) = &common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return Err("not a signature key (key_ops has no verify)");
        }
    }
    let (kind, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => (KeyKind::Rsa, DecodingKey::from_rsa_components(&p.n, &p.e)),
        AlgorithmParameters::EllipticCurve(p) => {
            let curve = match p.curve {
                EllipticCurve::P256 => Curve::P256,
                EllipticCurve::P384 => Curve::P384,
                _ => return Err("unsupported curve (P-256 and P-384 are)"),
            };
            (
                KeyKind::Ec(curve),
                DecodingKey::from_ec_components(&p.x, &p.y),
            )
        }
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => (KeyKind::Ed25519, DecodingKey::from_ed_components(&p.x)),
            _ => return Err("unsupported curve (Ed25519 is)"),
        },
        // A JWKS is public: a symmetric key in it would be a secret anyone
        // can read, and HMAC is only for the configured secret.
        AlgorithmParameters::OctetKey(_) => return Err("a symmetric (oct) key"),
    };
    let key = key.map_err(|_| "malformed key parameters (not base64url)")?;
    let alg = match common.key_algorithm {
        None => None,
        Some(stated) => {
            let alg = Algorithm::from_str(&stated.to_string())
                .map_err(|_| "its alg is not a signature algorithm")?;
            if !kind.fits(alg) {
                return Err("its alg does not fit its kty / crv");
            }
            Some(alg)
        }
    };
    Ok(Key {
        kid: common.key_id.clone(),
        kind,
        alg,
        key,
    })
}
