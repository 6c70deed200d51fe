//! Identity proofing with the signature certificate and what leaves: standard claims and
//! verified_claims, only as registration, request and consent allow.

mod common;
use axum::http::StatusCode;
use broker::card::Key;
use broker::clock::b64url;
use broker::store::Counts;
use common::*;
use serde_json::{Value, json};

fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&broker::clock::b64url_decode(p).unwrap()).unwrap()
}

async fn tokens(
    t: &TestBroker,
    br: &mut Browser,
    card: &mut broker::card::VirtualCard,
    extra: &[(&str, &str)],
) -> Value {
    let p = login_with_card(br, card, &auth_url(extra)).await;
    let r = redeem(br, &p["code"]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let _ = t;
    r.json()
}

#[tokio::test]
async fn first_login_proofs_and_claims_are_released_as_requested() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[("scope", "openid profile address")])).await;
    // Stage one: the authentication certificate alone creates nothing; proofing is asked for.
    let r = helper_answer_once(&mut br, &s.helper_path, &mut card, "1234").await;
    assert_eq!(
        r.json(),
        json!({"status": "proofing_required", "next": "signature"})
    );
    assert_eq!(t.counts().await, Counts::default());
    let st = br.get(&format!("/login/{}/status", s.tx)).await.json();
    assert_eq!(
        (st["status"].as_str(), st["stage"].as_str()),
        (Some("pending"), Some("signature"))
    );
    let ch = br.get(&s.helper_path).await.json();
    assert_eq!(ch["certificate"], "signature");
    let msg = String::from_utf8(
        broker::clock::b64url_decode(ch["to_be_signed"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert!(msg.contains("\npurpose=proofing\n"), "{msg}");
    // The authentication certificate presented for the signature stage: refused, nothing stored.
    let raw = broker::clock::b64url_decode(ch["to_be_signed"].as_str().unwrap()).unwrap();
    let sig = card.sign(Key::Auth, "1234", &raw).unwrap();
    let r = br
        .post_json(&s.helper_path, &json!({"certificate": b64url(&card.auth_certificate_der().unwrap()), "signature": b64url(&sig)}))
        .await;
    assert_eq!(r.json()["error"], "invalid_certificate");
    assert_eq!(t.counts().await, Counts::default());
    // Stage two with the signature certificate and PIN.
    let r = helper_answer_once(&mut br, &s.helper_path, &mut card, "ABC123").await;
    assert_eq!(r.json()["status"], "authenticated", "{}", r.body);
    let c = t.counts().await;
    assert_eq!((c.accounts, c.cert_links, c.verified_claims), (1, 2, 1));
    let r = br.get(&format!("/login/{}/continue", s.tx)).await;
    let loc = r.location.unwrap();
    let page = br.get(&loc).await;
    assert!(
        page.body.contains("住所") || page.body.contains("Address"),
        "consent lists the address"
    );
    let csrf = csrf_of(&page);
    let r = br
        .post_form(&loc, &[("csrf", &csrf), ("decision", "approve")], None)
        .await;
    let code = r.redirect_params()["code"].clone();
    let tok = redeem(&mut br, &code).await.json();
    let ui = br
        .get_bearer("/userinfo", tok["access_token"].as_str().unwrap())
        .await
        .json();
    assert_eq!(ui["name"], "試験\u{3000}花子");
    assert_eq!(ui["name_substituted"], "00000");
    assert_eq!(ui["birthdate"], "1985-06-15");
    assert_eq!(ui["gender"], "female");
    assert_eq!(
        ui["address"],
        json!({"formatted": "東京都千代田区サンプル町1-1", "country": "JP"})
    );
    assert!(
        ui["address_substituted"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c == '0')
    );
    assert!(ui.get("verified_claims").is_none(), "not requested");
    // The ID token carries personal claims only when the claims parameter asks for them there.
    let id = payload(tok["id_token"].as_str().unwrap());
    assert!(id.get("name").is_none());
    assert_eq!(id["acr"], "aal3");
}

#[tokio::test]
async fn verified_claims_and_their_constraints() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let req = json!({
        "userinfo": {"verified_claims": {"verification": {"trust_framework": null}, "claims": {"name": null, "birthdate": null}}},
        "id_token": {"birthdate": null},
    });
    let tok = tokens(
        &t,
        &mut br,
        &mut card,
        &[("scope", "openid"), ("claims", &req.to_string())],
    )
    .await;
    let id = payload(tok["id_token"].as_str().unwrap());
    assert_eq!(id["birthdate"], "1985-06-15");
    let ui = br
        .get_bearer("/userinfo", tok["access_token"].as_str().unwrap())
        .await
        .json();
    let vc = &ui["verified_claims"];
    let tf = t.broker.policy().proofing.trust_framework.clone();
    assert_eq!(vc["verification"]["trust_framework"], tf.as_str());
    let ev = &vc["verification"]["evidence"][0];
    assert_eq!(ev["type"], "electronic_signature");
    assert_eq!(ev["signature_type"], "jpki_signature_certificate");
    assert!(ev["issuer"].as_str().unwrap().contains("JPKI-DEMO"));
    assert!(!ev["serial_number"].as_str().unwrap().is_empty());
    assert_eq!(vc["claims"]["name"], "試験\u{3000}花子");
    assert_eq!(vc["claims"]["birthdate"], "1985-06-15");
    assert!(vc["claims"].get("address").is_none(), "only what was asked");
    assert!(
        ui.get("name").is_none(),
        "the name was asked inside verified_claims only"
    );

    // A trust framework the broker does not use: verified_claims is omitted, no error.
    let req = json!({"userinfo": {"verified_claims": {"verification": {"trust_framework": {"value": "eidas"}}, "claims": {"name": null}}}});
    let mut br = t.browser();
    let tok = tokens(
        &t,
        &mut br,
        &mut card,
        &[("scope", "openid"), ("claims", &req.to_string())],
    )
    .await;
    let ui = br
        .get_bearer("/userinfo", tok["access_token"].as_str().unwrap())
        .await
        .json();
    assert!(ui.get("verified_claims").is_none(), "{ui}");
    assert!(ui["sub"].is_string());
}

#[tokio::test]
async fn registration_limits_what_leaves_and_new_claims_need_new_consent() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    // The hospital may receive name and birthdate only.
    let url = auth_url(&[
        ("client_id", "hospital"),
        (
            "redirect_uri",
            "https://patients.hospital.example.jp/oidc/cb",
        ),
        ("scope", "openid name birthdate address"),
        (
            "claims",
            &json!({"userinfo": {"gender": null, "address": null}}).to_string(),
        ),
    ]);
    let p = login_with_card(&mut br, &mut card, &url).await;
    let r = br
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &p["code"]),
                (
                    "redirect_uri",
                    "https://patients.hospital.example.jp/oidc/cb",
                ),
                ("code_verifier", VERIFIER),
                ("client_id", "hospital"),
                ("client_secret", "hospital-demo-secret"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ui = br
        .get_bearer("/userinfo", r.json()["access_token"].as_str().unwrap())
        .await
        .json();
    assert_eq!(ui["name"], "試験\u{3000}花子");
    assert_eq!(ui["birthdate"], "1985-06-15");
    assert!(
        ui.get("address").is_none() && ui.get("gender").is_none(),
        "{ui}"
    );
    // local-dev: consent to openid+profile; asking for the address then needs consent again.
    let r = br.get(&auth_url(&[])).await;
    let loc = r.location.unwrap();
    assert!(loc.starts_with("/consent/"), "{loc}");
    let page = br.get(&loc).await;
    let csrf = csrf_of(&page);
    let r = br
        .post_form(&loc, &[("csrf", &csrf), ("decision", "approve")], None)
        .await;
    assert!(r.redirect_params().contains_key("code"));
    let r = br.get(&auth_url(&[])).await;
    assert!(r.redirect_params().contains_key("code"), "remembered");
    let r = br
        .get(&auth_url(&[(
            "claims",
            &json!({"userinfo": {"address": null}}).to_string(),
        )]))
        .await;
    assert!(r.location.unwrap().starts_with("/consent/"));
}

#[tokio::test]
async fn unproofed_accounts_only_where_policy_allows_and_only_without_personal_data() {
    let pol = "[proofing]\nallow_unproofed = true\n\n[revocation]\n[[revocation.issuers]]\nanchor = \"demo-auth-ca\"\nocsp_url = \"{demo}/demo-pki/ocsp/user_auth\"\n[[revocation.issuers]]\nanchor = \"demo-sign-ca\"\nocsp_url = \"{demo}/demo-pki/ocsp/signature\"\n";
    let t = TestBroker::with_options(&[], Some(pol)).await;
    let mut card = t.card("card");
    let mut br = t.browser();
    // openid only: the authentication certificate suffices; an unproofed account.
    let s = start_login(&mut br, &auth_url(&[("scope", "openid")])).await;
    let r = helper_answer_once(&mut br, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.json()["status"], "authenticated", "{}", r.body);
    let c = t.counts().await;
    assert_eq!((c.accounts, c.verified_claims), (1, 0));
    // Asking for personal data leads to proofing, which links to the same account.
    let mut b2 = t.browser();
    let s = start_login(&mut b2, &auth_url(&[("scope", "openid profile")])).await;
    let r = helper_answer_once(&mut b2, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.json()["status"], "proofing_required");
    let r = helper_answer_once(&mut b2, &s.helper_path, &mut card, "ABC123").await;
    assert_eq!(r.json()["status"], "authenticated", "{}", r.body);
    let c = t.counts().await;
    assert_eq!((c.accounts, c.verified_claims, c.cert_links), (1, 1, 2));
}

fn serial_of(der: &[u8]) -> Vec<u8> {
    hex::decode(broker::pki::inspect(der).unwrap().serial_hex).unwrap()
}

async fn sub_of(
    br: &mut Browser,
    card: &mut broker::card::VirtualCard,
    extra: &[(&str, &str)],
) -> String {
    let p = login_with_card(br, card, &auth_url(extra)).await;
    let tok = redeem(br, &p["code"]).await.json();
    payload(tok["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_renewed_card_keeps_the_account_and_the_pairwise_sub() {
    let t = TestBroker::new().await;
    let mut old = t.card("old");
    let sub1 = sub_of(&mut t.browser(), &mut old, &[]).await;
    // The municipality renews the card: new certificates, the old ones superseded, and the
    // renewal recorded as link information.
    let mut new = t.card("new");
    t.renew(&mut old, &mut new);
    // Proofing with the new card links it to the same account: the same pairwise sub.
    let sub2 = sub_of(&mut t.browser(), &mut new, &[]).await;
    assert_eq!(sub1, sub2);
    let c = t.counts().await;
    assert_eq!((c.accounts, c.cert_links, c.verified_claims), (1, 4, 1));
    // The old card is refused once the cached answer is past its bound.
    t.clock.advance(time::Duration::seconds(61));
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[])).await;
    let r = helper_answer(&mut br, &s.helper_path, &mut old, "1234").await;
    assert_eq!(r.json()["error"], "certificate_revoked");
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("renewed"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn affiliation_changed_makes_claims_stale_until_proofed_again() {
    use broker::pki::{CertKind, RevocationReason};
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let tok = tokens(&t, &mut br, &mut card, &[]).await;
    let at = tok["access_token"].as_str().unwrap().to_string();
    assert!(br.get_bearer("/userinfo", &at).await.json()["name"].is_string());
    // The person moves: J-LIS revokes the signature certificate (affiliationChanged).
    let sign = card.sign_certificate_der("ABC123").unwrap();
    t.demo_ca()
        .revoke(
            CertKind::Signature,
            &serial_of(&sign),
            RevocationReason::AffiliationChanged,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    t.clock.advance(time::Duration::seconds(61));
    // A login for personal data re-checks the signature certificate: the claims become stale
    // and proofing is asked for — and the revoked certificate cannot do it.
    let mut b2 = t.browser();
    let s = start_login(&mut b2, &auth_url(&[])).await;
    let r = helper_answer_once(&mut b2, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.json()["status"], "proofing_required", "{}", r.body);
    let r = helper_answer_once(&mut b2, &s.helper_path, &mut card, "ABC123").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "certificate_revoked");
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("basic information"),
        "{}",
        r.body
    );
    // Stale claims no longer leave: the grants of tokens issued before are revoked with the
    // signals to the relying parties ([signals] revoke_grants).
    let ui = br.get_bearer("/userinfo", &at).await;
    assert_eq!(ui.status, StatusCode::UNAUTHORIZED, "{}", ui.body);
    assert!(!ui.body.contains("name\""), "{}", ui.body);
    // A login that asks for no personal data still works with the authentication card.
    let mut b3 = t.browser();
    let p = login_with_card(&mut b3, &mut card, &auth_url(&[("scope", "openid")])).await;
    assert!(p.contains_key("code"));
    // Proofing again with a new signature certificate makes the claims current again.
    let mut renewed = t.card("renewed");
    let ca = t.demo_ca();
    ca.record_renewal(
        CertKind::Signature,
        &serial_of(&sign),
        &serial_of(&renewed.sign_certificate_der("ABC123").unwrap()),
    )
    .unwrap();
    ca.record_renewal(
        CertKind::UserAuth,
        &serial_of(&card.auth_certificate_der().unwrap()),
        &serial_of(&renewed.auth_certificate_der().unwrap()),
    )
    .unwrap();
    let tok = tokens(&t, &mut t.browser(), &mut renewed, &[]).await;
    let ui = t
        .browser()
        .get_bearer("/userinfo", tok["access_token"].as_str().unwrap())
        .await
        .json();
    assert!(ui["name"].is_string(), "{ui}");
    assert_eq!(t.counts().await.accounts, 1);
}

/// The account a card's user-authentication certificate is linked to.
async fn account_of(t: &TestBroker, card: &broker::card::VirtualCard) -> Option<String> {
    let info = broker::pki::inspect(&card.auth_certificate_der().unwrap()).unwrap();
    t.broker
        .store
        .account_by_cert(&info.issuer, &info.serial_hex)
        .await
        .unwrap()
}

async fn audit_kinds(t: &TestBroker, account: &str) -> Vec<(String, Value)> {
    t.broker
        .store
        .audit_events(account)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, serde_json::from_str(&e.detail_json).unwrap()))
        .collect()
}

/// What the first proofing records in the person's record (and the audit log).
#[tokio::test]
async fn every_new_link_is_in_the_persons_record() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    sub_of(&mut t.browser(), &mut card, &[]).await;
    let account = account_of(&t, &card).await.unwrap();
    let events = audit_kinds(&t, &account).await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "account_created",
            "certificate_linked",
            "certificate_linked",
            "identity_proofed"
        ]
    );
    assert_eq!(events[1].1["certificate"], "user_auth");
    assert_eq!(events[1].1["how"], "new_account");
    assert_eq!(events[2].1["certificate"], "signature");
    // A later login links nothing and records nothing new.
    sub_of(&mut t.browser(), &mut card, &[]).await;
    assert_eq!(audit_kinds(&t, &account).await.len(), 4);
}

/// The attack found from outside: card B, never used, answers the first stage; card A's
/// signature certificate (A proofed) answers the proofing stage. B must not become a way to
/// log in as A: refused, nothing stored, and B is still no one.
#[tokio::test]
async fn a_strangers_card_is_not_linked_through_someone_elses_signature_certificate() {
    let t = TestBroker::new().await;
    let mut a = t.card("a");
    // Even a card with the same basic four (another card of a namesake born the same day).
    let mut b = t.card("b");
    sub_of(&mut t.browser(), &mut a, &[]).await;
    let account_a = account_of(&t, &a).await.unwrap();
    let before = t.counts().await;
    assert_eq!((before.accounts, before.cert_links), (1, 2));
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[])).await;
    let r = helper_answer_once(&mut br, &s.helper_path, &mut b, "1234").await;
    assert_eq!(r.json()["status"], "proofing_required", "{}", r.body);
    let r = helper_answer_once(&mut br, &s.helper_path, &mut a, "ABC123").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({
            "error": "certificates_not_linked",
            "error_description": "this signature certificate belongs to an account with another card, and nothing shows that this card's user-authentication certificate belongs to it: log in with that account's own card (a renewed card is recognised by its link information)"
        })
    );
    assert_eq!(t.counts().await, before, "nothing stored");
    assert_eq!(account_of(&t, &b).await, None);
    assert_eq!(audit_kinds(&t, &account_a).await.len(), 4);
    // The login did not happen.
    let st = br.get(&format!("/login/{}/status", s.tx)).await.json();
    assert_eq!(st["status"], "pending");
    let r = br.get(&format!("/login/{}/continue", s.tx)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Card B alone is still no one: its next login asks for proofing again.
    let mut b2 = t.browser();
    let s = start_login(&mut b2, &auth_url(&[])).await;
    let r = helper_answer_once(&mut b2, &s.helper_path, &mut b, "1234").await;
    assert_eq!(r.json()["status"], "proofing_required");
    // With its own signature certificate it becomes its own person.
    let r = helper_answer_once(&mut b2, &s.helper_path, &mut b, "ABC123").await;
    assert_eq!(r.json()["status"], "authenticated", "{}", r.body);
    let account_b = account_of(&t, &b).await.unwrap();
    assert_ne!(account_b, account_a);
}

/// The converse: a proofed card B re-proofing (its claims went stale) with card A's signature
/// certificate would take A's identity onto B's account: refused.
#[tokio::test]
async fn certificates_of_two_accounts_are_never_joined() {
    use broker::pki::{CertKind, RevocationReason};
    let t = TestBroker::new().await;
    let mut a = t.card("a");
    let mut b = t.card_born("b", time::macros::date!(1970 - 01 - 01));
    sub_of(&mut t.browser(), &mut a, &[]).await;
    sub_of(&mut t.browser(), &mut b, &[]).await;
    t.demo_ca()
        .revoke(
            CertKind::Signature,
            &serial_of(&b.sign_certificate_der("ABC123").unwrap()),
            RevocationReason::AffiliationChanged,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    t.clock.advance(time::Duration::seconds(61));
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[])).await;
    let r = helper_answer_once(&mut br, &s.helper_path, &mut b, "1234").await;
    assert_eq!(r.json()["status"], "proofing_required", "{}", r.body);
    let before = t.counts().await;
    let r = helper_answer_once(&mut br, &s.helper_path, &mut a, "ABC123").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "certificates_not_linked");
    assert_eq!(
        r.json()["error_description"],
        "the user-authentication certificate and the signature certificate belong to different accounts: use the two certificates of one card"
    );
    assert_eq!(t.counts().await, before);
    assert_ne!(account_of(&t, &a).await, account_of(&t, &b).await);
}

/// After a move J-LIS issues a new signature certificate for the same card (the
/// user-authentication certificate stays): it proofs the account again if it names the same
/// person; another person's new signature certificate is refused.
#[tokio::test]
async fn a_new_signature_certificate_proofs_again_only_for_the_same_person() {
    use broker::pki::{CertKind, RevocationReason};
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    sub_of(&mut t.browser(), &mut card, &[]).await;
    let account = account_of(&t, &card).await.unwrap();
    t.demo_ca()
        .revoke(
            CertKind::Signature,
            &serial_of(&card.sign_certificate_der("ABC123").unwrap()),
            RevocationReason::AffiliationChanged,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    t.clock.advance(time::Duration::seconds(61));
    // Someone else's signature certificate, never seen by the broker.
    let mut stranger = t.card_born("stranger", time::macros::date!(1970 - 01 - 01));
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[])).await;
    let r = helper_answer_once(&mut br, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.json()["status"], "proofing_required", "{}", r.body);
    let before = t.counts().await;
    let r = helper_answer_once(&mut br, &s.helper_path, &mut stranger, "ABC123").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json()["error_description"],
        "the signature certificate names a different person (birth date) than this account's verified identity: use the signature certificate of your own card"
    );
    assert_eq!(t.counts().await, before);
    // The person's own new signature certificate (same birth date): proofed again.
    let mut reissued = t.card("reissued");
    let r = helper_answer_once(&mut br, &s.helper_path, &mut reissued, "ABC123").await;
    assert_eq!(r.json()["status"], "authenticated", "{}", r.body);
    let c = t.counts().await;
    assert_eq!(
        (c.accounts, c.cert_links),
        (before.accounts, before.cert_links + 1)
    );
    let events = audit_kinds(&t, &account).await;
    let (kind, detail) = &events[events.len() - 2];
    assert_eq!(kind, "certificate_linked");
    assert_eq!(
        (detail["certificate"].as_str(), detail["how"].as_str()),
        (Some("signature"), Some("same_person"))
    );
    assert_eq!(events.last().unwrap().0, "identity_proofed");
}

/// A revocation with affiliationChanged stops the claims at the next release — userinfo of a
/// token issued before, without waiting for the person's next login.
#[tokio::test]
async fn claims_stop_at_userinfo_when_the_signature_certificate_is_revoked() {
    use broker::pki::{CertKind, RevocationReason};
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let tok = tokens(&t, &mut br, &mut card, &[]).await;
    let at = tok["access_token"].as_str().unwrap().to_string();
    assert!(br.get_bearer("/userinfo", &at).await.json()["name"].is_string());
    let sign = card.sign_certificate_der("ABC123").unwrap();
    t.demo_ca()
        .revoke(
            CertKind::Signature,
            &serial_of(&sign),
            RevocationReason::AffiliationChanged,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    // The operator purges the cached answer (`broker certs purge`): at once.
    let ca = t.demo_pki().ca_cert_der(CertKind::Signature);
    t.broker
        .checker()
        .purge("demo-sign-ca", &ca, &serial_of(&sign))
        .await;
    let ui = br.get_bearer("/userinfo", &at).await.json();
    assert!(ui.get("name").is_none() && ui["sub"].is_string(), "{ui}");
    let account = account_of(&t, &card).await.unwrap();
    let v = t
        .broker
        .store
        .verified_claims(&account)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.stale_reason.as_deref(), Some("affiliationChanged"));
}

/// The same card's first login in two tabs at once: both proofings see a person new to the
/// broker; one links the certificates first, the other's write meets those links, is undone,
/// and is decided again over them — both logins succeed, on one account.
#[tokio::test]
async fn a_cards_first_login_in_two_tabs_at_once_makes_one_account() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let (mut b1, mut b2) = (t.browser(), t.browser());
    let s1 = start_login(&mut b1, &auth_url(&[])).await;
    let s2 = start_login(&mut b2, &auth_url(&[])).await;
    for (br, s) in [(&mut b1, &s1), (&mut b2, &s2)] {
        let r = helper_answer_once(br, &s.helper_path, &mut card, "1234").await;
        assert_eq!(r.json()["status"], "proofing_required");
    }
    // Both signature answers made before either is posted.
    let mut bodies = Vec::new();
    for (br, s) in [(&mut b1, &s1), (&mut b2, &s2)] {
        let ch = br.get(&s.helper_path).await.json();
        let msg = broker::clock::b64url_decode(ch["to_be_signed"].as_str().unwrap()).unwrap();
        bodies.push(json!({
            "certificate": b64url(&card.sign_certificate_der("ABC123").unwrap()),
            "signature": b64url(&card.sign(Key::Sign, "ABC123", &msg).unwrap()),
        }));
    }
    let a1 = b1.post_json(&s1.helper_path, &bodies[0]);
    let a2 = b2.post_json(&s2.helper_path, &bodies[1]);
    let (r1, r2) = tokio::join!(a1, a2);
    assert_eq!(r1.json()["status"], "authenticated", "{}", r1.body);
    assert_eq!(r2.json()["status"], "authenticated", "{}", r2.body);
    let c = t.counts().await;
    assert_eq!((c.accounts, c.cert_links, c.verified_claims), (1, 2, 1));
}

/// The store's own guard: a plan decided before another login linked the certificates is
/// refused inside the database transaction, with nothing written (the challenge stays unused).
#[tokio::test]
async fn a_plan_overtaken_by_another_link_writes_nothing() {
    use broker::authn::proofing::LinkPlan;
    use broker::store::{CardLoginOutcome, CertLink, Proofing};
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    sub_of(&mut t.browser(), &mut card, &[]).await;
    // Another transaction at its signature stage, answered with a plan made as if the card were
    // new to the broker.
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[("prompt", "login")])).await;
    let tx = t.broker.store.get_tx(&s.tx).await.unwrap().unwrap();
    let before = t.counts().await;
    let auth = broker::pki::inspect(&card.auth_certificate_der().unwrap()).unwrap();
    let sign = broker::pki::inspect(&card.sign_certificate_der("ABC123").unwrap()).unwrap();
    let link = |i: &broker::pki::CertInfo, kind: &str| CertLink {
        issuer: i.issuer.clone(),
        serial: i.serial_hex.clone(),
        kind: kind.into(),
        not_after: 0,
        anchor: None,
    };
    let p = Proofing {
        auth: link(&auth, "user_auth"),
        sign: link(&sign, "signature"),
        sign_anchor: "demo-sign-ca".into(),
        claims_json: "{}".into(),
        evidence_json: "{}".into(),
        facts_json: "{}".into(),
        plan: LinkPlan::New,
    };
    // Put the transaction at its signature stage as begin_proofing would.
    assert!(
        t.broker
            .store
            .begin_proofing(
                &tx.helper_hash,
                &tx.challenge_nonce,
                "n2",
                t.broker.now() + 60,
                &broker::authn::ceremony::PendingAuth {
                    issuer: auth.issuer.clone(),
                    serial: auth.serial_hex.clone(),
                    not_after: 0,
                    facts: broker::authn::AuthFacts::jpki_user_auth(
                        &auth.issuer,
                        &auth.serial_hex,
                        broker::authn::RevocationFact::Good,
                        0,
                    ),
                },
            )
            .await
            .unwrap()
    );
    let out = t
        .broker
        .store
        .complete_proofing(&tx.helper_hash, "n2", &p, t.broker.now())
        .await
        .unwrap();
    assert_eq!(out, CardLoginOutcome::LinkConflict);
    assert_eq!(t.counts().await, before);
    let tx = t.broker.store.get_tx(&s.tx).await.unwrap().unwrap();
    assert!(!tx.challenge_used, "the challenge is still unused");
}
