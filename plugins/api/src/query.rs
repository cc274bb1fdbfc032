//! Reading the upgrade request's query string and bearer credential.

use crate::HeaderMap;

/// The first value of `name` in a raw query string, decoded as
/// `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte; an
/// invalid escape stays as written, invalid UTF-8 becomes U+FFFD).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `Authorization: Bearer <t>` if the request has an `Authorization` header
/// (`None` for another scheme), else the `access_token` query parameter. An
/// empty token is no token.
pub(crate) fn bearer_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
            .filter(|t| !t.is_empty());
    }
    query_param(query?, "access_token").filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::UpgradeRequest;

    fn request<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> UpgradeRequest<'a> {
        UpgradeRequest {
            path: "/ws",
            query,
            headers,
            client_ip: IpAddr::from([127, 0, 0, 1]),
            secure: false,
            conn_id: None,
        }
    }

    #[test]
    fn bearer_from_header_wins_over_query() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer abc".parse().expect("header"));
        let req = request(&headers, Some("access_token=xyz"));
        assert_eq!(req.bearer_token().as_deref(), Some("abc"));
    }

    #[test]
    fn bearer_from_query_is_decoded() {
        let headers = HeaderMap::new();
        let req = request(&headers, Some("topics=a&access_token=a%2Bb%3D"));
        assert_eq!(req.bearer_token().as_deref(), Some("a+b="));
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_no_credential() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Basic abc".parse().expect("header"));
        assert_eq!(request(&headers, None).bearer_token(), None);
        let headers = HeaderMap::new();
        assert_eq!(
            request(&headers, Some("access_token=")).bearer_token(),
            None
        );
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(query_param("a=%zz%4", "a").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("a=x+y%21", "a").as_deref(), Some("x y!"));
        assert_eq!(query_param("b=1", "a"), None);
    }

    #[test]
    fn a_sign_is_not_a_hex_digit() {
        // `%+1` is not an escape: it stays as written (the `+` is a space).
        assert_eq!(query_param("a=%+1", "a").as_deref(), Some("% 1"));
        assert_eq!(query_param("a=%-1", "a").as_deref(), Some("%-1"));
        assert_eq!(query_param("a=%2B1", "a").as_deref(), Some("+1"));
    }

    #[test]
    fn keys_are_decoded_and_the_first_value_wins() {
        assert_eq!(query_param("a%20b=1&a+b=2", "a b").as_deref(), Some("1"));
        assert_eq!(query_param("flag&x=1", "flag").as_deref(), Some(""));
        assert_eq!(
            request(&HeaderMap::new(), None).query_param("a"),
            None,
            "no query string"
        );
    }
}
