//! `broker serve`: assemble the broker, start its background loops (policy watch, CRL refresh,
//! cluster sync, purge of expired rows) and serve.

use crate::app::Broker;
use crate::clock::SystemClock;
use crate::config::Config;
use anyhow::Context;
use std::sync::Arc;

/// Run the server until Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    if config.demo {
        tracing::warn!("DEMO mode: demo JPKI trust anchors are trusted; never use in production");
    }
    if config.danger_allow_http_issuer {
        tracing::warn!("danger_allow_http_issuer: the issuer may be plain http");
    }
    let listen = config.listen;
    let broker = Broker::start(config, Arc::new(SystemClock)).await?;
    let app = crate::http::app(broker.clone());
    // Policy and relying-party files reload on SIGHUP and when they change.
    tokio::spawn(crate::service::reload::watch(broker.clone()));
    let refresher = broker.clone();
    tokio::spawn(async move {
        // CRLs are reloaded before their nextUpdate, so logins never wait on a CRL download.
        let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            every.tick().await;
            // A changed CRL is swept over the certificates linked under its CA (signals).
            if let Err(e) = crate::service::signals::refresh_crls(&refresher).await {
                tracing::warn!(error = %e, "signalling after a CRL refresh failed; the next refresh tries again");
            }
        }
    });
    let follower = broker.clone();
    tokio::spawn(async move {
        // Follow the other processes on the same database: key rotations, cache purges.
        let mut every = tokio::time::interval(std::time::Duration::from_secs(
            follower.config.cluster.sync_interval,
        ));
        let mut state = crate::service::cluster::SyncState::default();
        loop {
            every.tick().await;
            if let Err(e) = crate::service::cluster::sync(&follower, &mut state).await {
                tracing::warn!(error = %e, "cluster sync failed; retrying");
            }
        }
    });
    let sender = broker.clone();
    tokio::spawn(async move {
        // Back-channel logout tokens, from the outbox every process shares.
        let http = crate::outbox::http_client();
        let mut every = tokio::time::interval(std::time::Duration::from_secs(
            sender.config.cluster.sync_interval,
        ));
        loop {
            every.tick().await;
            if let Err(e) = crate::outbox::deliver_due(&sender, &http).await {
                tracing::warn!(error = %e, "delivering logout tokens failed; retrying");
            }
        }
    });
    let purger = broker.clone();
    tokio::spawn(async move {
        // Login transactions go when they expire; codes, sessions and refresh tokens an hour
        // later (a replay still meets its record); see `Store::purge_expired`.
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            if let Err(e) = purger.store.purge_verifications(purger.now()).await {
                tracing::warn!(error = %e, "purging expired verification records failed");
            }
            match purger.store.purge_expired(purger.now()).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired records"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging expired records failed"),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let reg = broker.registry();
    eprintln!(
        "broker listening on {listen}\n  issuer:    {}\n  discovery: {}/.well-known/openid-configuration\n  relying parties: {}\n  demo: {}",
        broker.issuer(),
        broker.issuer(),
        reg.len(),
        broker.demo(),
    );
    if broker.demo() {
        eprintln!(
            "  log in: open {}/ in a browser, or issue a virtual card:\n    broker card issue --out mycard && broker card login --card mycard --pin 1234 --sign-pin ABC123 --consent '<authorization URL>'",
            broker.issuer()
        );
    }
    let limits = broker.config.limits;
    crate::http::serve(listener, app, limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
