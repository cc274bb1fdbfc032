//! The check of one token: its header's algorithm against the configured
//! list, its signature with the chosen keys, then its claims.
//!
//! jsonwebtoken 9 refuses a `Validation` whose algorithms are not all of
//! the key's family, so each token is verified with a `Validation` for
//! exactly its header's `alg`: one per configured algorithm, made when the
//! config is loaded. The keys are chosen (see [`crate::keys`]) only among
//! those that fit that algorithm, so a public key is never used as an HMAC
//! secret; `none`, which jsonwebtoken cannot even parse, never gets here.
//!
//! Every refusal is a fixed text: nothing of the token, the key or the
//! library's error text is echoed to the client.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde_json::{Map, Value};
use wsgate_plugin_api::{Identity, Rejection};

use crate::keys::Key;

/// The refusal of a token no key is known for.
pub const UNKNOWN_KEY: &str = "unknown signing key";

/// The claim checks, per algorithm, and where the user is.
pub struct Verifier {
    /// One `Validation` per configured algorithm, with `algorithms` set to
    /// exactly that one.
    validations: Vec<(Algorithm, Validation)>,
    user_claim: String,
}

impl Verifier {
    /// `exp` is required; `iss` / `aud` are required and checked when set
    /// (without a configured audience a token's `aud` is not ours to judge:
    /// jsonwebtoken would otherwise refuse any token with one).
    pub fn new(
        algorithms: &[Algorithm],
        leeway_secs: u64,
        issuer: Option<&str>,
        audience: Option<&str>,
        user_claim: String,
    ) -> Self {
        let validations = algorithms
            .iter()
            .map(|alg| {
                let mut validation = Validation::new(*alg);
                validation.leeway = leeway_secs;
                validation.validate_exp = true;
                validation.validate_nbf = true;
                let mut required = vec!["exp"];
                if let Some(issuer) = issuer {
                    validation.set_issuer(&[issuer]);
                    required.push("iss");
                }
                match audience {
                    Some(audience) => {
                        validation.set_audience(&[audience]);
                        required.push("aud");
                    }
                    None => validation.validate_aud = false,
                }
                validation.set_required_spec_claims(&required);
                (*alg, validation)
            })
            .collect();
        Self {
            validations,
            user_claim,
        }
    }

    /// The configured algorithms, in order.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.validations.iter().map(|(alg, _)| *alg).collect()
    }

    /// The first of them (for `Debug`: they all share the claim checks).
    fn any(&self) -> Option<&Validation> {
        self.validations.first().map(|(_, v)| v)
    }

    pub fn leeway_secs(&self) -> u64 {
        self.any().map_or(0, |v| v.leeway)
    }

    pub fn issuer(&self) -> Option<Vec<String>> {
        self.any()
            .and_then(|v| v.iss.as_ref())
            .map(|s| s.iter().cloned().collect())
    }

    pub fn audience(&self) -> Option<Vec<String>> {
        self.any()
            .and_then(|v| v.aud.as_ref())
            .map(|s| s.iter().cloned().collect())
    }

    pub fn user_claim(&self) -> &str {
        &self.user_claim
    }

    /// Reads the token's header (unverified: it only chooses the check)
    /// and the `Validation` of its algorithm, which must be configured.
    pub fn header(&self, token: &str) -> Result<(Header, &Validation), Rejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let validation = self
            .validations
            .iter()
            .find(|(alg, _)| *alg == header.alg)
            .map(|(_, v)| v)
            .ok_or_else(invalid)?;
        Ok((header, validation))
    }

    /// Verifies `token` with each of `keys` (all of which fit its
    /// algorithm) until one verifies its signature, then checks its claims
    /// and gives the identity.
    pub fn verify(
        &self,
        token: &str,
        keys: &[&Key],
        validation: &Validation,
    ) -> Result<Identity, Rejection> {
        let mut claims = None;
        for key in keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                // Not this key's signature (or a key that cannot verify
                // at all): try the next one.
                Err(e) if not_this_key(e.kind()) => continue,
                // The signature verified (or the token is malformed, for
                // every key alike): that is the answer.
                Err(e) => return Err(rejection(e.kind())),
            }
        }
        let claims = claims.ok_or_else(invalid)?;
        self.identity(claims)
    }

    /// The identity of a verified token's claims.
    fn identity(&self, claims: Map<String, Value>) -> Result<Identity, Rejection> {
        // jsonwebtoken skips an `nbf` it cannot parse; a token that states a
        // start time we cannot read is not valid.
        if let Some(nbf) = claims.get("nbf") {
            if !is_numeric_date(nbf) {
                return Err(invalid());
            }
        }

        let claim = &self.user_claim;
        let user = match claims.get(claim) {
            None | Some(Value::Null) => {
                return Err(unauthorized(format!("token has no {claim} claim")))
            }
            Some(Value::String(s)) if s.is_empty() => {
                return Err(unauthorized(format!("token has an empty {claim} claim")))
            }
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(unauthorized(format!(
                    "token's {claim} claim is not a string or number"
                )))
            }
        };

        Ok(Identity {
            user: Some(Arc::from(user)),
            claims,
        })
    }
}

pub fn unauthorized(message: impl Into<String>) -> Rejection {
    Rejection::Unauthorized(message.into())
}

/// The refusal of a token that is malformed, badly signed or of an
/// algorithm not configured.
pub fn invalid() -> Rejection {
    unauthorized("invalid token")
}

/// Whether a decode error means only that this key did not verify the
/// signature, so that another key may.
fn not_this_key(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::Crypto(_)
    )
}

/// Maps a jsonwebtoken error to what the client is told. Only fixed texts:
/// nothing of the token (or the library's error text) is echoed.
fn rejection(kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::ExpiredSignature => unauthorized("token expired"),
        ErrorKind::ImmatureSignature => unauthorized("token not yet valid"),
        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => forbidden(),
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" | "aud" => forbidden(),
            // Only the claims we required ("exp") can get here.
            "exp" => unauthorized("token has no exp claim"),
            _ => invalid(),
        },
        _ => invalid(),
    }
}

/// The refusal of a genuine token meant for another issuer or audience.
fn forbidden() -> Rejection {
    Rejection::Forbidden("token not valid for this service".to_string())
}

/// Whether `value` is a JWT NumericDate as jsonwebtoken reads it: a
/// non-negative integer or finite number.
fn is_numeric_date(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_u64() || n.as_f64().is_some_and(|f| f.is_finite() && f >= 0.0),
        _ => false,
    }
}
