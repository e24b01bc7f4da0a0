//! `cargo xtask bench matcher`: events/s through the rule matcher on one
//! core, with the shipped rules and with 1,000 generated rules, against an
//! empty rule set and a naive scan in the same run. The measuring code is
//! `monitor/benches/matcher.rs`: it needs the library, which xtask does not
//! link.

pub fn run() -> anyhow::Result<()> {
    crate::cmd("cargo", &["bench", "-p", "monitor", "--bench", "matcher"])
}
