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
    (
        "waiting_any",
        "パスキーかマイナンバーカードでの操作を待っています…",
        "Waiting for your passkey or your card…",
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
    (
        "consent_identifier",
        "このサービス専用の利用者識別子（ほかのサービスとは異なる番号）",
        "An identifier for you, for this service only (other services get different ones)",
    ),
    (
        "consent_level",
        "このログインで確認されたレベル",
        "Level this login reached",
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
    (
        "authenticated",
        "確認できました。サービスに戻ります…",
        "Done. Taking you back to the service…",
    ),
    (
        "login_lost",
        "このログインは期限切れか、別のブラウザで始められたものです。サービスに戻って、もう一度ログインしてください。",
        "This login has expired or was started in another browser. Go back to the service and log in again.",
    ),
    ("start_again", "サービスに戻る", "Back to the service"),
    (
        "first_login_note",
        "初めてのログインでは、本人確認のため、続けて署名用電子証明書の暗証番号（英数字6〜16桁）もお願いします。",
        "The first time, you will also be asked for your signature certificate's PIN (6–16 letters and digits) to verify who you are.",
    ),
    (
        "qr_label",
        "カードのアプリで読み取るQRコード（下のリンクと同じ内容）",
        "QR code for the card app (the same as the link below)",
    ),
    (
        "open_link",
        "カードのアプリ・ヘルパーで開く",
        "Open with the card app or helper",
    ),
    (
        "method_passkey",
        "パスキー（指紋・顔認証など）",
        "Passkey (fingerprint, face or device PIN)",
    ),
    (
        "passkey_hint",
        "カードでログインしたあとにアカウントページで追加したパスキーで、このサービスにログインできます。",
        "You can log in to this service with a passkey you added on your account page after a card login.",
    ),
    ("passkey_field", "パスキーを選ぶ", "Choose a passkey"),
    (
        "passkey_button",
        "パスキーでログイン",
        "Log in with a passkey",
    ),
    (
        "passkey_checking",
        "パスキーを確認しています…",
        "Checking the passkey…",
    ),
    (
        "passkey_failed",
        "パスキーでログインできませんでした。",
        "The passkey login did not succeed.",
    ),
    (
        "passkey_cancelled",
        "パスキーの操作が取り消されました。カードでもログインできます。",
        "The passkey was cancelled. You can also log in with the card.",
    ),
    ("title_account", "アカウント", "Your account"),
    (
        "session_level",
        "このログインのレベル",
        "Level of this login",
    ),
    ("passkeys_heading", "パスキー", "Passkeys"),
    ("col_name", "名前", "Name"),
    ("col_kind", "種類", "Kind"),
    ("col_created", "追加日時", "Added"),
    ("col_last_used", "最終利用", "Last used"),
    ("col_actions", "操作", "Actions"),
    (
        "passkey_synced",
        "同期型（複数の端末で使えます）",
        "Synced (usable on several devices)",
    ),
    ("passkey_device_bound", "この端末のみ", "This device only"),
    ("never", "未使用", "Never"),
    (
        "suspended_card_revoked",
        "停止中：登録したカードの証明書が失効しました",
        "Suspended: the certificate of the card that added it was revoked",
    ),
    (
        "suspended_card_expired",
        "停止中：登録したカードの証明書が有効期限切れです",
        "Suspended: the certificate of the card that added it has expired",
    ),
    (
        "suspended_counter_regressed",
        "停止中：複製された可能性があります",
        "Suspended: it may have been copied",
    ),
    ("passkey_name_label", "名前", "Name"),
    ("rename", "名前を変更", "Rename"),
    ("remove", "削除", "Remove"),
    (
        "no_passkeys",
        "パスキーはまだありません。",
        "No passkeys yet.",
    ),
    (
        "passkey_add_hint",
        "この端末やスマートフォンにパスキーを追加すると、カードを使わずにログインできるサービスがあります（銀行などはカードを求めます）。",
        "Add a passkey on this device or your phone to log in without the card where a service allows it (banks and the like ask for the card).",
    ),
    ("add_passkey", "パスキーを追加", "Add a passkey"),
    (
        "passkey_added",
        "パスキーを追加しました。",
        "Passkey added.",
    ),
    (
        "passkey_add_failed",
        "パスキーを追加できませんでした。",
        "The passkey could not be added.",
    ),
    ("error_detail", "詳細", "Details"),
    (
        "error_generic",
        "この操作を続けられませんでした。",
        "This could not be done.",
    ),
    (
        "error_transaction_gone",
        "このログインは期限切れか、すでに終わっています。サービスに戻って、もう一度ログインしてください。",
        "This login has expired or is already over. Go back to the service and log in again.",
    ),
    (
        "error_wrong_browser",
        "このログインは別のブラウザで始められました。ログインを始めたブラウザで続けてください。",
        "This login was started in another browser. Continue in the browser where you started it.",
    ),
    (
        "error_not_authenticated",
        "カードでの操作がまだ終わっていません。ログインのページに戻ってください。",
        "The card has not been used yet. Go back to the login page.",
    ),
    (
        "error_bad_csrf",
        "このフォームは古くなっています。サービスに戻って、もう一度お試しください。",
        "This form is out of date. Go back to the service and try again.",
    ),
    (
        "error_invalid_request",
        "サービスからの要求に誤りがあります。サービスの提供者にお知らせください。",
        "The service sent a request the broker cannot accept. Please tell the service's provider.",
    ),
    (
        "error_unauthorized_client",
        "このサービスは、この方法でのログインを登録していません。",
        "This service is not registered to log in this way.",
    ),
    (
        "error_server_error",
        "ブローカーで問題が発生しました。しばらくしてからお試しください。",
        "Something went wrong in the broker. Please try again later.",
    ),
    (
        "error_temporarily_unavailable",
        "ただいま混み合っています。少し待ってから、このページを再読み込みしてください。",
        "The broker is briefly unavailable. Wait a moment and reload this page.",
    ),
    (
        "error_card_login_required",
        "パスキーを追加するには、マイナンバーカードでログインし直してください。",
        "To add a passkey, log in again with your My Number card.",
    ),
    (
        "title_device",
        "テレビなどの機器でログイン",
        "Log in on a TV or other device",
    ),
    (
        "device_enter",
        "機器の画面に表示されたコードを入力してください",
        "Enter the code shown on your device's screen",
    ),
    ("device_lookup", "次へ", "Next"),
    (
        "device_asks",
        "次の機器からのログインを承認しようとしています。",
        "You are about to approve a login on a device.",
    ),
    ("device_service", "サービス", "Service"),
    ("device_code_label", "コード", "Code"),
    ("device_requested_at", "要求された日時", "Requested at"),
    (
        "device_warning",
        "このコードがお手元の機器の画面に表示されているものと同じ場合だけ続けてください。他人から伝えられたコードは入力しないでください。",
        "Continue only if this code is the one on your own device's screen. Never enter a code someone else gave you.",
    ),
    ("device_continue", "承認に進む", "Continue to approve"),
    (
        "device_deny",
        "自分の機器ではない（拒否する）",
        "This is not my device (deny)",
    ),
    (
        "device_approved",
        "承認しました。機器の画面に戻ってください。",
        "Approved. Go back to your device.",
    ),
    (
        "device_denied",
        "承認されませんでした。機器ではログインできません。",
        "Not approved: the device will not be logged in.",
    ),
    (
        "device_gone",
        "このコードは期限切れか、すでに使われています。機器でもう一度お試しください。",
        "This code has expired or was used already. Start again on your device.",
    ),
    (
        "device_not_found",
        "このコードは見つかりません。機器の画面のコードを確かめてください。",
        "This code was not found. Check the code on your device's screen.",
    ),
    (
        "device_too_many",
        "コードの入力を続けて間違えたため、しばらく受け付けません。10分ほどしてからお試しください。",
        "Too many wrong codes: try again in about ten minutes.",
    ),
    ("title_logout", "ログアウト", "Log out"),
    (
        "logout_ask",
        "マイナンバーカード認証ブローカーからログアウトしますか？ ほかのサービスも、次はもう一度ログインが必要になります。",
        "Log out of the My Number card broker? Other services will ask you to log in again too.",
    ),
    ("logout_from", "ログアウトを求めたサービス", "Asked by"),
    ("logout_button", "ログアウトする", "Log out"),
    ("logged_out", "ログアウトしました。", "You are logged out."),
    (
        "title_helper_link",
        "マイナンバーカードのアプリで開くリンクです",
        "This link is for the My Number card app",
    ),
    (
        "helper_link_explain",
        "このリンクは、カードを読み取るアプリが開きます。アプリが入っていれば、リンクをタップするとアプリが起動します。",
        "The card-reading app opens this link: with the app installed, tapping the link starts it.",
    ),
    (
        "helper_link_install",
        "カードのアプリを入手する",
        "Get the card app",
    ),
    (
        "helper_link_pc",
        "パソコンでは、カードリーダーのヘルパーにこのリンクを渡してください。",
        "On a computer, give this link to the card-reader helper.",
    ),
    (
        "login_with_card",
        "マイナンバーカードでログインし直す",
        "Log in again with your My Number card",
    ),
    (
        "cannot_add",
        "今はパスキーを追加できません：",
        "A passkey cannot be added now:",
    ),
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
            ("account.html", include_str!("templates/account.html")),
            ("webauthn.js", include_str!("templates/webauthn.js")),
            ("device.html", include_str!("templates/device.html")),
            ("logout.html", include_str!("templates/logout.html")),
            (
                "helper_link.html",
                include_str!("templates/helper_link.html"),
            ),
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
        context! {
            code => code,
            message => message,
            summary => match text(lang, &format!("error_{code}")) {
                "" => text(lang, "error_generic"),
                t => t,
            },
        },
    )
}

/// The pages' icon: a card with a chip (SVG, cached for a day).
pub async fn favicon() -> Response {
    const ICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect x="2" y="6" width="28" height="20" rx="3" fill="#0055aa"/><rect x="7" y="12" width="8" height="7" rx="1" fill="#f2c94c"/><rect x="18" y="12" width="9" height="2" fill="#fff"/><rect x="18" y="17" width="6" height="2" fill="#fff"/></svg>"##;
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        ICON,
    )
        .into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `t.key` a template uses is in the catalogue, in both languages (a missing key
    /// renders as nothing: a button without a label).
    #[test]
    fn every_text_a_template_uses_exists_in_japanese_and_english() {
        let templates = [
            include_str!("templates/base.html"),
            include_str!("templates/login.html"),
            include_str!("templates/consent.html"),
            include_str!("templates/error.html"),
            include_str!("templates/index.html"),
            include_str!("templates/account.html"),
            include_str!("templates/device.html"),
            include_str!("templates/logout.html"),
            include_str!("templates/helper_link.html"),
        ];
        let mut seen = 0;
        for t in templates {
            for part in t.split("{{ t.").skip(1) {
                let key: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if key.is_empty() {
                    continue;
                }
                seen += 1;
                assert!(
                    !text(Lang::Ja, &key).is_empty(),
                    "`{key}` has no Japanese text"
                );
                assert!(
                    !text(Lang::En, &key).is_empty(),
                    "`{key}` has no English text"
                );
            }
        }
        assert!(seen > 40, "{seen}");
        // And the kinds and suspensions the account page composes.
        for k in [
            "passkey_synced",
            "passkey_device_bound",
            "suspended_card_revoked",
            "suspended_card_expired",
            "suspended_counter_regressed",
            "error_generic",
        ] {
            assert!(
                !text(Lang::Ja, k).is_empty() && !text(Lang::En, k).is_empty(),
                "{k}"
            );
        }
    }
}
