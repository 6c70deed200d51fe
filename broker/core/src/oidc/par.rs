//! Pushed authorization requests (RFC 9126): what a pushed request keeps, the `request_uri`
//! that names it, and why a `request_uri` at `/authorize` is refused. Pure: the conductor
//! (`service::par`) authenticates the client and stores the request; `/authorize` takes it back
//! once (`service::authorize`).

use super::authorize::SINGLE;
use super::error::OAuthError;

/// The prefix of every `request_uri` the broker hands out (RFC 9126 §2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// A new `request_uri` and the hash it is stored under (the URI itself is never stored).
pub fn new_request_uri() -> (String, String) {
    let secret = crate::clock::random_token();
    let hash = crate::clock::token_hash(&secret);
    (format!("{REQUEST_URI_PREFIX}{secret}"), hash)
}

/// The hash a `request_uri` of the broker's is stored under; None for any other URI.
pub fn request_uri_hash(uri: &str) -> Option<String> {
    uri.strip_prefix(REQUEST_URI_PREFIX)
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .map(crate::clock::token_hash)
}

/// The parameters of a pushed request's form that are an authorization request's (what
/// `authorize::validate` reads), with the authenticated client's id: client authentication
/// (`client_assertion`, `client_secret`) and unknown parameters are not kept. A `request_uri`
/// inside a pushed request, or a `client_id` other than the authenticated client's, is refused.
pub fn pushed_params(
    form: &[(String, String)],
    client_id: &str,
) -> Result<Vec<(String, String)>, OAuthError> {
    if form.iter().any(|(k, _)| k == "request_uri") {
        return Err(OAuthError::invalid_request(
            "request_uri cannot be pushed (RFC 9126 §2.1)",
        ));
    }
    let mut ids = form.iter().filter(|(k, _)| k == "client_id");
    match (ids.next(), ids.next()) {
        (_, Some(_)) => return Err(OAuthError::invalid_request("client_id is repeated")),
        (Some((_, id)), None) if id != client_id => {
            return Err(OAuthError::invalid_request(format!(
                "client_id `{id}` is not the client that authenticated (`{client_id}`)"
            )));
        }
        _ => {}
    }
    let mut kept: Vec<(String, String)> = vec![("client_id".into(), client_id.into())];
    kept.extend(
        form.iter()
            .filter(|(k, _)| k != "client_id" && SINGLE.contains(&k.as_str()))
            .cloned(),
    );
    Ok(kept)
}

/// A front-channel request that names a pushed one: its `client_id` and the stored hash.
/// None when the request has no `request_uri` of the broker's (the request is validated as
/// sent; a `request_uri` of another form is refused there as unsupported).
/// A refusal is shown on a page: no redirect URI is known yet.
pub fn reference(params: &[(String, String)]) -> Result<Option<(String, String)>, OAuthError> {
    let page = |e: OAuthError| e;
    let mut uris = params.iter().filter(|(k, _)| k == "request_uri");
    let Some((_, uri)) = uris.next() else {
        return Ok(None);
    };
    if !uri.starts_with(REQUEST_URI_PREFIX) {
        return Ok(None);
    }
    if uris.next().is_some() {
        return Err(page(OAuthError::invalid_request("request_uri is repeated")));
    }
    let mut ids = params.iter().filter(|(k, _)| k == "client_id");
    let client_id = match (ids.next(), ids.next()) {
        (Some((_, id)), None) if !id.is_empty() => id.clone(),
        (Some(_), Some(_)) => {
            return Err(page(OAuthError::invalid_request("client_id is repeated")));
        }
        _ => {
            return Err(page(OAuthError::invalid_request(
                "client_id is missing (it must come with request_uri)",
            )));
        }
    };
    let hash = request_uri_hash(uri).ok_or_else(|| {
        page(OAuthError::invalid_request_uri(
            "request_uri is not one the broker issued",
        ))
    })?;
    Ok(Some((client_id, hash)))
}

/// Why a pushed request could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Never issued (or purged long after it expired).
    Unknown,
    /// Taken before: a `request_uri` is single use.
    Used,
    /// Past its lifetime.
    Expired,
    /// Pushed by another client.
    OtherClient,
}

impl Refusal {
    pub fn error(self) -> OAuthError {
        OAuthError::invalid_request_uri(match self {
            Refusal::Unknown => "request_uri is not one the broker issued",
            Refusal::Used => "request_uri was used before (it is single use)",
            Refusal::Expired => "request_uri has expired; push the request again",
            Refusal::OtherClient => "request_uri was pushed by another client",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_pushed_request_keeps_the_authorization_parameters_and_not_the_credentials() {
        let kept = pushed_params(
            &p(&[
                ("response_type", "code"),
                ("client_assertion", "eyJ..."),
                ("client_assertion_type", "jwt-bearer"),
                ("scope", "openid"),
                ("whatever", "x"),
            ]),
            "bank",
        )
        .unwrap();
        assert_eq!(
            kept,
            p(&[
                ("client_id", "bank"),
                ("response_type", "code"),
                ("scope", "openid")
            ])
        );
    }

    #[test]
    fn a_pushed_request_refuses_request_uri_and_another_client_id() {
        let e = pushed_params(&p(&[("request_uri", "urn:x")]), "bank").unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_request");
        let e = pushed_params(&p(&[("client_id", "city")]), "bank").unwrap_err();
        assert!(e.description.contains("`city`"), "{e}");
        assert!(pushed_params(&p(&[("client_id", "bank")]), "bank").is_ok());
    }

    #[test]
    fn the_front_channel_names_a_pushed_request_with_its_client() {
        let (uri, hash) = new_request_uri();
        assert!(uri.starts_with(REQUEST_URI_PREFIX));
        let r = reference(&p(&[("client_id", "bank"), ("request_uri", &uri)])).unwrap();
        assert_eq!(r, Some(("bank".into(), hash)));
        // Another form of request_uri is not the broker's: validated (and refused) as sent.
        assert_eq!(
            reference(&p(&[
                ("client_id", "bank"),
                ("request_uri", "https://rp/x")
            ]))
            .unwrap(),
            None
        );
        assert_eq!(reference(&p(&[("client_id", "bank")])).unwrap(), None);
        let Err(error) = reference(&p(&[("request_uri", &uri)])) else {
            panic!("a request_uri without client_id is refused on a page")
        };
        assert!(error.description.contains("client_id is missing"));
        let Err(error) = reference(&p(&[
            ("client_id", "bank"),
            ("request_uri", REQUEST_URI_PREFIX),
        ])) else {
            panic!()
        };
        assert_eq!(error.code.as_str(), "invalid_request_uri");
    }
}
