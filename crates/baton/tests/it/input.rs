//! Bad input: a clear, typed error, nothing lost, no password shown.

use std::time::Duration;

use baton::{Client, Error, NameError};

use crate::support::within;

#[tokio::test]
async fn bad_names_are_typed_errors() {
    let client = Client::in_memory();
    let long = "n".repeat(513);
    for (name, want) in [
        ("", NameError::Empty),
        (long.as_str(), NameError::TooLong { len: 513, max: 512 }),
        ("a\nb", NameError::ControlChar { at: 1 }),
    ] {
        let err = client.lock(name).try_acquire().await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidName { reason, .. } if *reason == want),
            "{name:?}: {err}"
        );
        assert!(!err.is_retryable());
        let err = client.lock(name).acquire().await.unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }));
    }
}

#[tokio::test]
async fn bad_ttls_are_typed_errors() {
    let client = Client::in_memory();
    for ttl in [
        Duration::ZERO,
        Duration::from_micros(900),
        Duration::from_millis(9),
        // Accepted until renewal was measured: it could not keep it.
        Duration::from_millis(10),
        baton::MIN_TTL - Duration::from_millis(1),
        Duration::from_secs(25 * 3600),
        Duration::MAX,
    ] {
        let err = client.lock("job").ttl(ttl).try_acquire().await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidTtl { ttl: t, .. } if t == ttl),
            "{ttl:?}: {err}"
        );
    }
    let mut guard = client
        .lock("job")
        .try_acquire()
        .await
        .unwrap()
        .expect("free");
    assert!(matches!(
        guard.extend(Duration::ZERO).await,
        Err(Error::InvalidTtl { .. })
    ));
    assert!(guard.is_held(), "a refused extend changes nothing");
    assert!(client
        .lock("job")
        .ttl(baton::MIN_TTL)
        .try_acquire()
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn bad_prefixes_and_timeouts_are_typed_errors() {
    let err = Client::builder()
        .node("redis://127.0.0.1:1")
        .prefix("bad\u{7}")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidPrefix { .. }), "{err}");
    let err = Client::builder()
        .node("redis://127.0.0.1:1")
        .node_timeout(Duration::ZERO)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                option: "node timeout",
                ..
            }
        ),
        "{err}"
    );
    let err = Client::builder().build().await.unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err}");
}

#[tokio::test]
async fn bad_urls_are_typed_errors_without_passwords() {
    within(async {
        for url in [
            "nonsense",
            "http://127.0.0.1:6379",
            "redis://:hunter2@127.0.0.1:notaport",
            // redis-rs knows only the #insecure fragment.
            "rediss://:hunter2@127.0.0.1:1/#unverified",
        ] {
            let err = Client::connect(url).await.unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err:?}");
            assert!(
                !format!("{err} {err:?}").contains("hunter2"),
                "password shown: {err:?}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn a_wrong_password_is_a_backend_error_without_the_password() {
    within(async {
        let server =
            baton_test_support::RedisServer::start_with(baton_test_support::ServerOptions {
                password: Some("right-password".into()),
                ..Default::default()
            });
        let url = format!("redis://:wrong-password@127.0.0.1:{}", server.port());
        let err = Client::connect(&url).await.unwrap_err();
        assert!(err.is_backend(), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("wrong-password") && !shown.contains("right-password"),
            "{shown}"
        );
        // And the right one works.
        let client = Client::connect(&server.url()).await.unwrap();
        assert!(client.lock("job").try_acquire().await.unwrap().is_some());
    })
    .await
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    /// Any text that is no Redis URL (no `scheme://`), with a password-like
    /// part in it: a typed `InvalidUrl` error, no panic, no password shown.
    #[test]
    fn any_text_that_is_no_url_is_a_typed_error(text in "[^:/]{0,30}", secret in "[a-z]{8}") {
        let url = format!("{text}:Pw{secret}@{text}");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let err = runtime.block_on(Client::connect(&url)).unwrap_err();
        proptest::prop_assert!(matches!(err, Error::InvalidUrl { .. }), "{url:?}: {err:?}");
        let password = format!("Pw{secret}");
        proptest::prop_assert!(!format!("{err} {err:?}").contains(&password), "{err:?}");
    }
}
