//! Which database a test broker uses. `tests/run` runs the suite twice: on SQLite (a file in
//! each test's data directory) and on PostgreSQL (`BROKER_TEST_DATABASE=postgres`), where each
//! test gets a database of its own on the server at `BROKER_TEST_POSTGRES`.

use std::process::Command;

/// `BROKER_DATABASE_URL` for a test broker: a fresh PostgreSQL database in the PostgreSQL pass,
/// none (the SQLite default in the data directory) otherwise.
pub fn test_database_url() -> Option<String> {
    match std::env::var("BROKER_TEST_DATABASE").as_deref() {
        Ok("postgres") => Some(fresh_postgres_database()),
        Ok("sqlite") | Err(_) => None,
        Ok(other) => panic!("BROKER_TEST_DATABASE={other}: expected sqlite or postgres"),
    }
}

/// The superuser URL of the suite's PostgreSQL server (started by `tests/run`).
pub fn postgres_server() -> String {
    std::env::var("BROKER_TEST_POSTGRES").expect(
        "BROKER_TEST_POSTGRES is not set: run the suite with tests/run, which starts a PostgreSQL server",
    )
}

/// Create an empty database on the suite's server; its URL.
pub fn fresh_postgres_database() -> String {
    create_database(&postgres_server())
}

/// Create an empty database on the server of `admin_url` (`…/postgres`); its URL.
pub fn create_database(admin_url: &str) -> String {
    let name = format!("t_{}", hex::encode(rand_bytes()));
    let o = Command::new("psql")
        .args([admin_url, "-v", "ON_ERROR_STOP=1", "-qc"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .expect("psql runs");
    assert!(
        o.status.success(),
        "CREATE DATABASE failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .expect("URL with a database");
    format!("{base}/{name}")
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}
