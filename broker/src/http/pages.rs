//! Server-rendered pages (minijinja, autoescaped), in Japanese and English.

use crate::app::Broker;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value, context};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    /// From `?lang=` first (the person's own choice), then the RP's `ui_locales`, then
    /// Accept-Language; Japanese by default.
    pub fn pick(ui_locales: &[String], query_lang: Option<&str>, headers: &HeaderMap) -> Lang {
        let parse = |s: &str| {
            let s = s.trim().to_ascii_lowercase();
            if s.starts_with("en") {
                Some(Lang::En)
            } else if s.starts_with("ja") {
                Some(Lang::Ja)
            } else {
                None
            }
        };
        if let Some(l) = query_lang.and_then(parse) {
            return l;
        }
        if let Some(l) = ui_locales.iter().find_map(|s| parse(s)) {
            return l;
        }
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',')
                    .find_map(|p| parse(p.split(';').next().unwrap_or("")))
            })
            .unwrap_or(Lang::Ja)
    }
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }
}

/// The message catalogue: (key, Japanese, English).
const TEXT: &[(&str, &str, &str)] = &[
    (
        "demo_banner",
        "デモ環境：デモ用の認証局を信頼しています。本物の個人情報を入力しないでください。",
        "this broker trusts a demo certificate authority. Do not enter real personal data.",
    ),
    (
        "title_login",
        "マイナンバーカードでログイン",
        "Log in with your My Number card",
    ),
    (
        "login_for",
        "次のサービスにログインします",
        "You are logging in to",
    ),
    (
        "method_card",
        "マイナンバーカード（利用者証明用電子証明書）",
        "My Number card (user authentication certificate)",
    ),
    (
        "step_helper",
        "スマートフォンのアプリ、またはカードリーダーのヘルパーで次のリンクを開き、4桁の暗証番号を入力してください。",
        "Open this link with the card app on your phone or the card-reader helper on your computer, and enter your 4-digit PIN.",
    ),
    (
        "binding_code",
        "確認コード（ヘルパーに表示される番号と同じことを確認してください）",
        "Confirmation code (check that your helper shows the same number)",
    ),
    (
        "cli_hint",
        "仮想カードの場合は端末で次を実行します：",
        "With a virtual card, run in a terminal:",
    ),
    (
        "waiting",
        "カードの操作を待っています…",
        "Waiting for the card…",
    ),
    ("continue", "続ける", "Continue"),
    (
        "proofing_step",
        "本人確認のため、署名用電子証明書（英数字6〜16桁の暗証番号）での操作をお願いします…",
        "To verify your identity, now approve with your signature certificate (6–16 character PIN)…",
    ),
    ("title_consent", "情報提供の同意", "Consent to share"),
    (
        "consent_intro",
        "次のサービスが、あなたに関する以下の情報を求めています",
        "This service asks for the following about you",
    ),
    ("approve", "同意する", "Allow"),
    ("deny", "拒否する", "Deny"),
    ("title_error", "エラー", "Error"),
    (
        "back",
        "サービスに戻って、もう一度お試しください。",
        "Go back to the service and try again.",
    ),
    (
        "title_index",
        "マイナンバーカード認証ブローカー",
        "My Number card identity broker",
    ),
    (
        "scope_openid",
        "利用者識別子（サービスごとに異なる番号）",
        "An identifier for you (different for each service)",
    ),
    (
        "scope_profile",
        "氏名・生年月日・性別",
        "Name, date of birth and gender",
    ),
    ("scope_name", "氏名", "Name"),
    ("scope_birthdate", "生年月日", "Date of birth"),
    ("scope_gender", "性別", "Gender"),
    ("scope_address", "住所", "Address"),
    (
        "scope_offline_access",
        "ログアウト後も継続してアクセスすること",
        "Continued access after you leave",
    ),
    (
        "claim_verified_claims",
        "本人確認済みの情報（署名用電子証明書による確認の記録を含む）",
        "Verified identity information (with the record of its verification by your signature certificate)",
    ),
    ("language", "English", "日本語"),
];

/// The catalogue for `lang` as a template value (`t.key`).
fn texts(lang: Lang) -> Value {
    let m: std::collections::BTreeMap<&str, &str> = TEXT
        .iter()
        .map(|(k, ja, en)| (*k, if lang == Lang::Ja { *ja } else { *en }))
        .collect();
    Value::from_serialize(&m)
}

pub fn text(lang: Lang, key: &str) -> &'static str {
    TEXT.iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, ja, en)| if lang == Lang::Ja { *ja } else { *en })
        .unwrap_or("")
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = Environment::new();
        for (name, src) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("consent.html", include_str!("templates/consent.html")),
            ("error.html", include_str!("templates/error.html")),
            ("index.html", include_str!("templates/index.html")),
        ] {
            e.add_template(name, src).expect("built-in template parses");
        }
        e
    })
}

/// The Content-Security-Policy of a page whose `<script>` and `<style>` elements carry
/// `nonce`: nothing else runs or styles it — no inline script an injection could add, no
/// `'unsafe-inline'`. Forms may lead to the relying party (the consent form's redirect).
fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' data:; connect-src 'self'; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Render `template` with `ctx` plus the common values (t, lang, demo, issuer, and the
/// response's CSP nonce `csp_nonce`).
pub fn render(b: &Broker, lang: Lang, status: StatusCode, template: &str, ctx: Value) -> Response {
    let nonce = crate::clock::random_token();
    let common = context! {
        t => texts(lang),
        lang => lang.code(),
        other_lang => if lang == Lang::Ja { "en" } else { "ja" },
        demo => b.demo(),
        issuer => b.issuer(),
        csp_nonce => nonce,
    };
    let full = context! { ..ctx, ..common };
    match env().get_template(template).and_then(|t| t.render(full)) {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&page_csp(&nonce)) {
                r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
            }
            r
        }
        Err(e) => {
            tracing::error!(error = %e, template, "template failed");
            // The renderer failing cannot render the error page: plain text (the one error
            // response not made in `http/error.rs`).
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The error page for `code`/`message`.
pub fn error_page(
    b: &Broker,
    lang: Lang,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    render(
        b,
        lang,
        status,
        "error.html",
        context! { code => code, message => message },
    )
}

/// An SVG QR code of `data` (for the helper link).
pub fn qr_svg(data: &str) -> String {
    match qrcode::QrCode::new(data.as_bytes()) {
        Ok(c) => c
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(180, 180)
            .build(),
        Err(_) => String::new(),
    }
}
