//! The card helper over HTTP, as a phone app or PC/SC desktop helper would be:
//! `approve` answers a challenge from a helper link; `login` also plays the browser, from an
//! authorization URL to the final redirect.

use crate::card::{Key, VirtualCard};
use crate::service::card::ChallengeView;
use crate::service::login::TxStatusView;
use anyhow::{Context, anyhow, bail};
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use url::Url;

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()?)
}

async fn error_text(r: reqwest::Response) -> String {
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    match serde_json::from_str::<Value>(&body) {
        Ok(v) if v["error"].is_string() => format!(
            "{} ({status}): {}",
            v["error"].as_str().unwrap_or_default(),
            v["error_description"].as_str().unwrap_or_default()
        ),
        _ => format!("HTTP {status}"),
    }
}

/// Answer the challenges behind `link`: each with the key and PIN of the certificate it asks
/// for — the user-authentication key with `pin`, the signature key with `sign_pin` when the
/// broker asks for identity proofing. A login may already be at its proofing stage (a first
/// attempt failed there, say with a wrong signature PIN): the PINs still go to their own
/// certificates.
pub async fn approve(
    http: &reqwest::Client,
    card: &mut VirtualCard,
    pin: &str,
    sign_pin: Option<&str>,
    link: &str,
) -> anyhow::Result<ChallengeView> {
    // At most two challenges: user authentication, then proofing.
    for _ in 0..2 {
        let ch = challenge(http, link).await?;
        let status = if ch.certificate == "signature" {
            let Some(sign_pin) = sign_pin else {
                bail!(
                    "the broker asks for identity proofing with your signature certificate; run again with --sign-pin"
                );
            };
            eprintln!(
                "Identity proofing: signing with the signature certificate (your name, birth date, gender and address will be verified)."
            );
            answer(http, card, &ch, Key::Sign, sign_pin).await?
        } else {
            answer(http, card, &ch, Key::Auth, pin).await?
        };
        match status.as_str() {
            "authenticated" => return Ok(ch),
            "proofing_required" => continue,
            other => bail!("unexpected status `{other}` from the broker"),
        }
    }
    bail!("the broker asked for more than user authentication and identity proofing")
}

/// The challenge behind `link`, checked to be a login challenge of the link's own origin.
async fn challenge(http: &reqwest::Client, link: &str) -> anyhow::Result<ChallengeView> {
    let link_url = Url::parse(link).context("the helper link is not a URL")?;
    let r = http
        .get(link)
        .send()
        .await
        .context("cannot reach the broker")?;
    if !r.status().is_success() {
        bail!("the broker refused the link: {}", error_text(r).await);
    }
    let ch: ChallengeView = r
        .json()
        .await
        .context("the challenge is not the expected JSON")?;
    // Show the person where and for whom they sign, and refuse a challenge for another origin.
    let msg = crate::clock::b64url_decode(&ch.to_be_signed)
        .ok_or_else(|| anyhow!("to_be_signed is not base64url"))?;
    let text = String::from_utf8(msg).context("to_be_signed is not text")?;
    let issuer_line = format!("issuer={}", ch.issuer);
    if !text.starts_with(crate::authn::card::CHALLENGE_TAG)
        || !text.lines().any(|l| l == issuer_line)
    {
        bail!(
            "the challenge is not a broker login challenge for {}",
            ch.issuer
        );
    }
    if Url::parse(&ch.issuer).map(|u| u.origin()) != Ok(link_url.origin()) {
        bail!(
            "the challenge names issuer {} but the link is on {}",
            ch.issuer,
            link_url.origin().ascii_serialization()
        );
    }
    eprintln!(
        "Logging in to {} ({}) at {} — confirmation code {}",
        ch.client_name, ch.client_id, ch.issuer, ch.binding_code
    );
    Ok(ch)
}

/// Sign challenge `ch` with the card's `key` (and its PIN) and post the answer; the status the
/// broker answered.
async fn answer(
    http: &reqwest::Client,
    card: &mut VirtualCard,
    ch: &ChallengeView,
    key: Key,
    pin: &str,
) -> anyhow::Result<String> {
    let msg = crate::clock::b64url_decode(&ch.to_be_signed)
        .ok_or_else(|| anyhow!("to_be_signed is not base64url"))?;
    let (cert, sig) = match key {
        Key::Sign => {
            let cert = card.sign_certificate_der(pin)?;
            (cert, card.sign(Key::Sign, pin, &msg)?)
        }
        Key::Auth => (
            card.auth_certificate_der()?,
            card.sign(Key::Auth, pin, &msg)?,
        ),
    };
    let r = http
        .post(&ch.response_uri)
        .json(&json!({
            "certificate": crate::clock::b64url(&cert),
            "signature": crate::clock::b64url(&sig),
        }))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("the broker refused the card: {}", error_text(r).await);
    }
    let v: Value = r.json().await.context("the answer is not JSON")?;
    Ok(v["status"].as_str().unwrap_or_default().to_string())
}

pub async fn approve_cmd(
    card_dir: &std::path::Path,
    pin: &str,
    sign_pin: Option<&str>,
    link: &str,
) -> anyhow::Result<()> {
    let mut card = VirtualCard::open(card_dir)?;
    approve(&client()?, &mut card, pin, sign_pin, link).await?;
    eprintln!("Approved. The browser continues by itself.");
    Ok(())
}

fn location(r: &reqwest::Response) -> anyhow::Result<Url> {
    let l = r
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow!("expected a redirect, got HTTP {}", r.status()))?;
    Ok(r.url().join(l)?)
}

/// Play browser and helper from `auth_url` to the redirect back to the relying party, and
/// return that redirect URL.
pub async fn login(
    card_dir: &std::path::Path,
    pin: &str,
    sign_pin: Option<&str>,
    consent: bool,
    auth_url: &str,
) -> anyhow::Result<String> {
    let http = client()?;
    let mut card = VirtualCard::open(card_dir)?;
    let start = Url::parse(auth_url).context("the authorization URL is not a URL")?;
    let r = http
        .get(start.clone())
        .send()
        .await
        .context("cannot reach the broker")?;
    if !r.status().is_redirection() {
        bail!("the broker did not start a login: {}", page_error(r).await);
    }
    let mut next = location(&r)?;
    if next.origin() != start.origin() {
        // Straight back to the relying party (an error, or an SSO session).
        return Ok(next.to_string());
    }
    let tx = next
        .path()
        .strip_prefix("/login/")
        .ok_or_else(|| anyhow!("unexpected redirect to {next}"))?
        .to_string();
    let status_url = start.join(&format!("/login/{tx}/status"))?;
    let st: TxStatusView = http.get(status_url.clone()).send().await?.json().await?;
    approve(&http, &mut card, pin, sign_pin, &st.helper_url).await?;
    let st: TxStatusView = http.get(status_url).send().await?.json().await?;
    if st.status != "authenticated" {
        bail!("the broker did not accept the card (status {})", st.status);
    }
    let r = http.get(&st.continue_url).send().await?;
    if !r.status().is_redirection() {
        bail!("continuing the login failed: {}", page_error(r).await);
    }
    next = location(&r)?;
    if next.origin() == start.origin() && next.path().starts_with("/consent/") {
        if !consent {
            bail!("the relying party needs your consent; run again with --consent to give it");
        }
        let page = http.get(next.clone()).send().await?.text().await?;
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .ok_or_else(|| anyhow!("the consent page has no form token"))?;
        let r = http
            .post(next.clone())
            .form(&[("csrf", csrf), ("decision", "approve")])
            .send()
            .await?;
        if !r.status().is_redirection() {
            bail!("consent failed: {}", page_error(r).await);
        }
        next = location(&r)?;
    }
    Ok(next.to_string())
}

async fn page_error(r: reqwest::Response) -> String {
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    let code = body
        .split("id=\"error-code\">")
        .nth(1)
        .and_then(|s| s.split('<').next());
    let msg = body
        .split("id=\"error-message\">")
        .nth(1)
        .and_then(|s| s.split('<').next());
    match (code, msg) {
        (Some(c), Some(m)) => format!("{c}: {}", html_unescape(m)),
        _ => format!("HTTP {status}"),
    }
}

fn html_unescape(s: &str) -> String {
    s.replace("&#x60;", "`")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}
