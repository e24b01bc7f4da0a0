//! Bad `--output` URLs are usage errors: exit code 2, a message naming the
//! URL and the forms that work, no panic. Needs no privileges.

use dockwatch_tests::run_cli;

#[test]
fn bad_output_urls_exit_2_naming_the_url() {
    for url in [
        "syslog://localhost",
        "file://relative/path",
        "syslog+tcp://host:notaport",
        "syslog+tcp://localhost?format=xml",
    ] {
        let (code, _, stderr) = run_cli(["replay", "--output", url, "/dev/null"]);
        assert_eq!(code, 2, "{url}: {stderr}");
        assert!(
            stderr.contains(url),
            "{url}: message names the URL: {stderr}"
        );
        assert!(
            stderr.contains("syslog+tcp://HOST[:PORT]"),
            "{url}: message lists the accepted forms: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn tls_key_without_certificate_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[tls]\nkey = \"/nonexistent.key\"\n").unwrap();
    let (code, _, stderr) = run_cli([
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--output",
        "syslog+tls://127.0.0.1:6514",
        "/dev/null",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("[tls]"), "{stderr}");
}
