//! The phone hand-off: a card app registered for the issuer's helper-link path opens the login
//! page's link itself (universal links / app links, published by the broker); a phone without
//! the app opens it in the browser and gets a page saying what to do; helpers still get JSON.

mod common;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;

#[tokio::test]
async fn card_apps_are_published_for_the_helper_path_and_a_browser_gets_a_page() {
    // Without card apps configured there is nothing to publish.
    let t = TestBroker::new().await;
    for p in [
        "/.well-known/apple-app-site-association",
        "/.well-known/assetlinks.json",
    ] {
        assert_eq!(
            t.browser().get(p).await.status,
            StatusCode::NOT_FOUND,
            "{p}"
        );
    }
    let t = TestBroker::with_config(|c| {
        c.card_app = broker::config::CardApp {
            apple_app_ids: vec!["ABCDE12345.jp.example.cardapp".into()],
            android: vec![broker::config::AndroidApp {
                package: "jp.example.cardapp".into(),
                sha256_cert_fingerprints: vec!["AA:BB:CC".into()],
            }],
            install_url: Some("https://apps.example.jp/cardapp".into()),
        };
    })
    .await;
    let aasa = t
        .browser()
        .get("/.well-known/apple-app-site-association")
        .await;
    assert_eq!(aasa.status, StatusCode::OK);
    let aasa = aasa.json();
    assert_eq!(
        aasa["applinks"]["details"][0]["appIDs"][0],
        "ABCDE12345.jp.example.cardapp"
    );
    assert_eq!(
        aasa["applinks"]["details"][0]["components"][0]["/"],
        "/card/v1/tx/*"
    );
    let links = t.browser().get("/.well-known/assetlinks.json").await.json();
    assert_eq!(links[0]["target"]["package_name"], "jp.example.cardapp");
    assert_eq!(
        links[0]["target"]["sha256_cert_fingerprints"][0],
        "AA:BB:CC"
    );

    // The login page's link, opened by a phone's browser: a page, in Japanese, with the app's
    // install link — and no challenge.
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[])).await;
    let req = Request::builder()
        .uri(&s.helper_path)
        .header(header::ACCEPT, "text/html,application/xhtml+xml")
        .header(header::ACCEPT_LANGUAGE, "ja")
        .body(Body::empty())
        .unwrap();
    let page = t.browser().send(req).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("id=\"helper-link-page\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("https:&#x2f;&#x2f;apps.example.jp&#x2f;cardapp")
            || page.body.contains("https://apps.example.jp/cardapp"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("to_be_signed"));
    // The helper still gets its challenge, and the login completes.
    let mut card = t.card("card");
    let r = helper_answer(&mut br, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
